# conc: build, test, bench, install. `make help` lists the targets.
#
# Every interpreter and variant builds out of tree: build/<lua>/<variant>/conc/core.so,
# where <variant> is release (-O2) or asan (ASan + UBSan, CONC_DEBUG invariant checks and
# a shuffled run queue).

LUAS := lua5.4 luajit lua5.1 $(if $(wildcard /usr/include/lua5.3/lua.h),lua5.3)
INC_lua5.4 := /usr/include/lua5.4
INC_lua5.3 := /usr/include/lua5.3
INC_lua5.1 := /usr/include/lua5.1
INC_luajit := /usr/include/luajit-2.1

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
        -Wwrite-strings -Wundef
BASE_CFLAGS := -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) -MMD -MP
CFLAGS_release := -O2 -g
CFLAGS_asan := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined -DCONC_DEBUG
LDLIBS := -luv

SRCS := $(wildcard csrc/*.c)
DEPS := lua5.4 liblua5.4-dev luajit libluajit-5.1-dev lua5.1 liblua5.1-0-dev libuv1-dev \
        lua-busted luarocks lua-ldoc lua-markdown

.PHONY: all deps test demo bench soak lint docs clean help

all: $(foreach l,$(LUAS),build/$(l)/release/conc/core.so)

help:
	@echo "make deps   install the system packages (apt-get) that are missing"
	@echo "make        build conc/core.so for every interpreter"
	@echo "make test   every spec under $(LUAS), then under ASan+UBSan"
	@echo "make demo   run every example (the timed ones at a tenth of their time scale)"
	@echo "make bench  the benchmark table against the peers (bench/RESULTS.md)"
	@echo "make soak   a minute of creating and dropping objects: memory must stay bounded"
	@echo "make lint   check that Lua-agnostic C files do not include lua.h, and that every"
	@echo "            public function has a doc comment (spec/doccheck.lua)"
	@echo "make docs   the API reference, from the doc comments, into docs/ (LDoc, config.ld)"

# Quick when everything is there: apt-get runs only for missing packages.
deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# luarocks installs for Lua 5.4, the primary interpreter, unless told otherwise
	@[ "$$(luarocks config lua_version 2>/dev/null)" = 5.4 ] || luarocks config --scope system lua_version 5.4 >/dev/null

define build_rules
build/$(1)/$(2)/obj/%.o: csrc/%.c
	@mkdir -p $$(@D)
	@echo "CC $(1)/$(2) $$<"
	@$$(CC) $$(BASE_CFLAGS) $$(CFLAGS_$(2)) -I$$(INC_$(1)) -c $$< -o $$@

build/$(1)/$(2)/conc/core.so: $$(patsubst csrc/%.c,build/$(1)/$(2)/obj/%.o,$$(SRCS))
	@mkdir -p $$(@D)
	@echo "LD $$@"
	@$$(CC) -shared $$(CFLAGS_$(2)) -o $$@ $$^ $$(LDLIBS)

-include $$(patsubst csrc/%.c,build/$(1)/$(2)/obj/%.d,$$(SRCS))
endef
$(foreach l,$(LUAS) ,$(foreach v,release asan,$(eval $(call build_rules,$(l),$(v)))))

test: deps
	@$(MAKE) --no-print-directory all build/lua5.4/asan/conc/core.so
	@sh spec/run.sh $(LUAS)

demo: deps
	@$(MAKE) --no-print-directory build/lua5.4/release/conc/core.so
	@printf '%s\n' 'demo --scale 0.1' replicated timeout rate_limit errors 'errors --bug' \
	  'heartbeat --scale 0.1' 'steward --scale 0.1' 'steward_stream --scale 0.1' \
	  'steward_tree --scale 0.1' primes 'primes --unordered --delay 1 --virtual' fib \
	  'chat/server --port 0 --for 0.5' chat/client_demo | \
	while read ex args; do echo "== examples/$$ex.lua $$args"; \
	  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/release/?.so;;" \
	  lua5.4 examples/$$ex.lua $$args || exit 1; done

bench: deps
	@$(MAKE) --no-print-directory build/lua5.4/release/conc/core.so build/luajit/release/conc/core.so
	@sh bench/run.sh

soak: deps
	@$(MAKE) --no-print-directory build/lua5.4/release/conc/core.so build/luajit/release/conc/core.so
	@for lua in lua5.4 luajit; do echo "== soak under $$lua"; \
	  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/$$lua/release/?.so;;" $$lua bench/soak.lua || exit 1; done

lint: deps
	@bad=$$(grep -l '#include [<"]lua' csrc/ring.h csrc/waitq.h csrc/heap.[ch] csrc/runq.[ch] csrc/bucket.[ch]); \
	if [ -n "$$bad" ]; then echo "lua.h included by Lua-agnostic files: $$bad"; exit 1; fi
	@$(MAKE) --no-print-directory build/lua5.4/release/conc/core.so
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/release/?.so;;" lua5.4 spec/doccheck.lua
	@echo "lint ok"

# The reference is generated, not committed (docs/ is in .gitignore). Any line of ldoc's
# output but its progress notes is a warning, and fails the target.
docs: deps
	@rm -rf docs
	@log=$$(mktemp); ldoc . >"$$log" 2>&1; status=$$?; \
	warnings=$$(grep -v -e '^reading configuration from ' -e '^found master module' \
	  -e '^\*\*\*closing section from master module\*\*\*$$' -e '^output written to ' "$$log"); \
	rm -f "$$log"; \
	if [ $$status -ne 0 ] || [ -n "$$warnings" ]; then \
	  echo "$$warnings"; echo "make docs: ldoc failed or warned"; exit 1; fi; \
	echo "docs/index.html: the API reference"

clean:
	rm -rf build
