# ldguard's native addon: plain C on Node-API (no C++), Linux only.
# Built by `npm install` (package.json "install") or `npx node-gyp rebuild --directory agent/native`.
{
  "targets": [
    {
      "target_name": "ldguard_native",
      "sources": [
        "src/addon.c",
        "src/watcher.c",
        "src/fanotify.c",
        "src/closewrite.c",
        "src/integrity.c",
        "src/subtree.c",
        "src/mounts.c",
        "src/procconn.c",
        "src/cache.c",
        "src/execfile.c",
        "src/procfs.c"
      ],
      "cflags!": ["-O3", "-Wno-unused-parameter"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "cflags_c": ["-std=gnu11"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources": [] }]
      ]
    }
  ]
}
