// Which fields a rule may name. A query naming a field that no event can ever carry (`file.pth`)
// compiles, never matches, and so silently switches the rule off: the loader refuses it, naming
// the nearest known field. A known field the agent never sets loads, with a warning (the rule may
// be meant for Elastic, or for a later agent), and `?field`, EQL's way of saying "this field may
// not exist", is never refused (it is only warned about like any field the agent does not set).
//
// Where the list comes from: the ECS 8.x field sets that Elastic Defend's Linux events carry, as
// mapped by elastic/endpoint-package (package/endpoint/data_stream/{file,process}/fields/fields.yml,
// which copy ECS's generated/ecs/ecs_flat.yml for those sets), and Elastic Defend's own Linux
// extensions there (`*.Ext.*`). It is written out by hand, set by set, because the upstream files
// are YAML with descriptions (~60 KB per data stream) and the agent needs only the names. When
// a rule from a newer detection-rules release is refused for a field that exists upstream, add
// the field here (and to AGENT_SETS below if the agent fills it).
import type { Expr, FieldRef, QueryAst } from './eql/index.js';

/** Expands "a.{b,c}" groups; one level of braces, comma-separated. */
function expand(spec: string): string[] {
  const m = /^(.*?)\{([^{}]*)\}(.*)$/.exec(spec);
  if (!m) return [spec];
  return m[2]!.split(',').flatMap((alt) => expand(`${m[1]}${alt.trim()}${m[3]}`));
}

const set = (...specs: string[]): string[] => specs.flatMap((s) => s.split(/\s+/).filter(Boolean)).flatMap(expand);

// ECS field sets reused under several parents (process.parent, process.group_leader, …).
const PROCESS_CORE = set(`
  args args_count command_line entity_id executable exit_code name pid ppid start end title uptime
  working_directory interactive same_as_process pgid thread.id thread.name
  hash.{md5,sha1,sha256,sha384,sha512,ssdeep,tlsh}
  user.{id,name} group.{id,name} real_user.{id,name} real_group.{id,name} saved_user.{id,name}
  saved_group.{id,name} supplemental_groups.{id,name} attested_user.{id,name} attested_groups.name
  tty.char_device.{major,minor} tty.{rows,columns}
  env_vars io.{text,type,total_bytes_captured,total_bytes_skipped,max_bytes_per_process_exceeded}
  elf.{architecture,byte_order,cpu_type,creation_date,exports,imports,header.abi_version,header.class,header.data,header.entrypoint,header.object_version,header.os_abi,header.type,header.version,sections,segments,shared_libraries,telfhash,go_import_hash,go_imports,go_stripped}
  code_signature.{exists,status,subject_name,trusted,valid,digest_algorithm,signing_id,team_id,timestamp}
  Ext.{ancestry,api,architecture,authentication_id,code_signature,created_by_system,defense_evasions,dll,effective_parent.entity_id,effective_parent.executable,effective_parent.name,effective_parent.pid,mitigation_policies,protection,relative_file_creation_time,relative_file_name_modify_time,session,session_info.logon_type,token.elevation,token.elevation_type,token.integrity_level_name,trusted,trusted_descendant,user}
  Ext.memfd.{flag_allow_seal,flag_cloexec,flag_hugetlb,name}
  env.{LD_PRELOAD,LD_LIBRARY_PATH}
`);

const FILE_CORE = set(`
  path name directory extension size inode mode uid gid owner group type target_path device
  drive_letter attributes created ctime mtime accessed mime_type fork_name
  hash.{md5,sha1,sha256,sha384,sha512,ssdeep,tlsh}
  elf.{architecture,byte_order,cpu_type,creation_date,exports,imports,header.abi_version,header.class,header.data,header.entrypoint,header.object_version,header.os_abi,header.type,header.version,sections,segments,shared_libraries,telfhash}
  code_signature.{exists,status,subject_name,trusted,valid}
  Ext.{code_signature,device.bus_type,device.dos_name,device.file_system_type,device.nt_name,device.product_id,device.serial_number,device.vendor_id,device.volume_device_type,entropy,entry_modified,header_bytes,header_data,malware_classification.identifier,malware_classification.score,malware_classification.threshold,malware_classification.version,monotonic_id,original.extension,original.gid,original.group,original.mode,original.name,original.owner,original.path,original.uid,quarantine_message,quarantine_path,quarantine_result,temp_file_path,windows.zone_identifier}
`);

const KNOWN_LIST: readonly string[] = [
  ...set(`@timestamp message tags labels ecs.version
    agent.{id,name,type,version,ephemeral_id,build.original}
    data_stream.{dataset,namespace,type}
    event.{action,agent_id_status,category,code,created,dataset,duration,end,hash,id,ingested,kind,module,original,outcome,provider,reason,reference,risk_score,risk_score_norm,sequence,severity,start,timezone,type,url}
    event.Ext.{correlation.id}
    host.{architecture,boot.id,domain,hostname,id,ip,mac,name,pid_ns_ino,type,uptime}
    host.os.{family,full,kernel,name,platform,type,version,Ext.variant}
    user.{domain,email,full_name,hash,id,name,roles} user.group.{domain,id,name} user.Ext.real.{id,name}
    group.{domain,id,name} group.Ext.real.{id,name}
    Effective_process.{entity_id,executable,name,pid}
    Persistence.{args,executable,keepalive,name,path,runatload}
    destination.geo.{city_name,continent_code,continent_name,country_iso_code,country_name,location,name,postal_code,region_iso_code,region_name,timezone}
    container.{id,name,image.name,image.tag,runtime}
    orchestrator.{cluster.name,namespace,resource.name,resource.type}
    cloud.{account.id,instance.id,provider,region}
  `),
  ...FILE_CORE.map((f) => `file.${f}`),
  ...PROCESS_CORE.map((f) => `process.${f}`),
  ...['parent', 'group_leader', 'session_leader', 'entry_leader', 'previous', 'responsible'].flatMap((p) => PROCESS_CORE.map((f) => `process.${p}.${f}`)),
  ...PROCESS_CORE.map((f) => `process.entry_leader.parent.${f}`),
  ...PROCESS_CORE.map((f) => `process.session_leader.parent.${f}`),
  ...PROCESS_CORE.map((f) => `process.entry_leader.parent.session_leader.${f}`),
  ...PROCESS_CORE.map((f) => `process.session_leader.parent.session_leader.${f}`),
  ...set('process.entry_meta.{type,source.ip} process.parent.group_leader.{entity_id,pid,start}'),
];

/** Every field an event a rule judges may carry (ECS and Elastic Defend's Linux extensions). */
export const KNOWN_FIELDS: ReadonlySet<string> = new Set(KNOWN_LIST);

// What the agent's events carry (shared/ecs.ts FileEvent): a rule on any other known field loads,
// but cannot match the way it would in Elastic, so the agent says so at start.
const AGENT_SETS: ReadonlySet<string> = new Set([
  ...set(`@timestamp ecs.version
    agent.{id,name,type,version}
    event.{action,category,created,dataset,id,kind,module,outcome,type}
    host.{architecture,hostname,id,ip,mac,name} host.os.{family,full,kernel,name,platform,type,version}
    user.{id,name} group.{id,name}
    file.{path,name,directory,extension,size,inode,mode,uid,gid,owner,group,type,hash.sha256}
    file.Ext.original.{path,name}
    process.{pid,entity_id,executable,name,args,args_count,command_line,working_directory,start}
    process.user.{id,name} process.group.{id,name}
    process.parent.{pid,entity_id,executable,name,args,command_line}
  `),
]);

/** A field the agent's events never carry; `?field` included (optional only silences refusal). */
export function setByAgent(path: string): boolean {
  return AGENT_SETS.has(path) || path.startsWith('ldguard.');
}

/** Whether a rule may name this field: ECS, Elastic Defend's, or ldguard's own (`ldguard.*`). */
export function knownField(path: string): boolean {
  return KNOWN_FIELDS.has(path) || path.startsWith('ldguard.') || path.startsWith('labels.');
}

/** The known field closest to `path` by edit distance (ties: the first in the list's order). */
export function nearestField(path: string): string {
  let best = '';
  let bestD = Infinity;
  for (const f of KNOWN_LIST) {
    if (Math.abs(f.length - path.length) >= bestD) continue;
    const d = distance(path, f, bestD);
    if (d < bestD) [best, bestD] = [f, d];
  }
  return best;
}

/** Levenshtein distance, giving up (returning `cap`) once every cell of a row reaches it. */
function distance(a: string, b: string, cap: number): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < rowMin) rowMin = v;
    }
    if (rowMin >= cap) return cap;
    prev = cur;
  }
  return prev[b.length]!;
}

/** Every field reference in a query, in source order. */
export function fieldRefs(ast: QueryAst): FieldRef[] {
  const out: FieldRef[] = [];
  const walk = (e: Expr): void => {
    switch (e.kind) {
      case 'and':
      case 'or':
        walk(e.left);
        walk(e.right);
        return;
      case 'not':
        walk(e.operand);
        return;
      case 'bool':
        return;
      default:
        out.push(e.field);
    }
  };
  walk(ast.condition);
  return out;
}

/** The refusals for a query: each field (not written `?field`) that no event can carry. */
export function unknownFieldProblems(ast: QueryAst): Array<{ line: number; column: number; message: string }> {
  return fieldRefs(ast)
    .filter((f) => !f.optional && !knownField(f.path))
    .map((f) => ({
      ...f.pos,
      message: `unknown field ${f.path}: it is in neither ECS nor Elastic Defend's field list, so the rule could never match; did you mean ${nearestField(f.path)}? (write ?${f.path} if the field really may exist)`,
    }));
}

/** Fields a loaded rule names that the agent never sets (each once): said at start, not refused. */
export function fieldsNotSet(ast: QueryAst): string[] {
  return [...new Set(fieldRefs(ast).map((f) => f.path))].filter((p) => !setByAgent(p));
}
