// The RuleError a rule text is refused with; fails the test when the text is accepted.
import { expect } from 'vitest';
import { parseRule, RuleError } from '../../shared/rule.js';

export function refusalOf(text: string, file = 'bad.toml'): RuleError {
  try {
    parseRule(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(RuleError);
    return err as RuleError;
  }
  throw new Error('the rule was accepted');
}
