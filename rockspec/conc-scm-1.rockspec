package = "conc"
version = "scm-1"
source = {
   url = "git+file:///conc",
}
description = {
   summary = "Go-style concurrency for Lua: tasks, channels, select, timers, on a C core with libuv",
   detailed = [[
conc gives Lua tasks (coroutines scheduled in C), channels and select, timers, and more of
the patterns of Concurrency in Go, with Go's semantics.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1, < 5.5",
}
external_dependencies = {
   LIBUV = { header = "uv.h", library = "uv" },
}
build = {
   type = "builtin",
   modules = {
      ["conc.core"] = {
         sources = {
            "csrc/chan.c", "csrc/conc.c", "csrc/heap.c", "csrc/runq.c",
            "csrc/sched.c", "csrc/select.c", "csrc/task.c", "csrc/timer.c", "csrc/ctx.c",
            "csrc/sync.c", "csrc/bucket.c", "csrc/rate.c", "csrc/net.c", "csrc/signal.c",
         },
         defines = { "_GNU_SOURCE" },
         incdirs = { "csrc", "$(LIBUV_INCDIR)" },
         libdirs = { "$(LIBUV_LIBDIR)" },
         libraries = { "uv" },
      },
      ["conc"] = "lua/conc/init.lua",
      ["conc.errors"] = "lua/conc/errors.lua",
      ["conc.protect"] = "lua/conc/protect.lua",
      ["conc.check"] = "lua/conc/check.lua",
      ["conc.sync"] = "lua/conc/sync.lua",
      ["conc.rate"] = "lua/conc/rate.lua",
      ["conc.steward"] = "lua/conc/steward.lua",
      ["conc.pipeline"] = "lua/conc/pipeline.lua",
      ["conc.net"] = "lua/conc/net.lua",
   },
}
