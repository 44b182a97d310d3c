# poplar: build, test, try and install.  GNU make.
#
#   make run        build, then start a demo server on 127.0.0.1:1110 (user demo, password demo)
#   make test       every test: unit, integration (they start the real binary) and the man page lint
#   make build      release build: target/release/poplar
#   make static     fully static binary for x86_64-unknown-linux-musl, optimised for size
#   make install    binary in $(PREFIX)/sbin, man page in $(PREFIX)/share/man/man8, examples (inetd, xinetd,
#                   systemd units, poplar.conf) in $(PREFIX)/share/doc/poplar; DESTDIR honoured;
#                   BIN=path installs that binary (e.g. the static one) instead of building target/release
#   make uninstall  remove what install put there
#   make check-static  build the static binary and check that file(1) and ldd(1) see no dynamic linking
#   make lint-man   mandoc -Tlint man/poplar.8, failing on any message
#   make bench      load generator against the release binary (PEER=dovecot, popa3d or reader adds one;
#                   BENCH_SCENARIOS=login,retr and BENCH_QUICK=1 cut it down; see README, Performance)
#   make fuzz       every fuzz target for FUZZ_SECONDS seconds each (cargo-fuzz; see README)
#   make clean      cargo clean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# Each recipe runs as one shell script, so `set -e` and variables hold across its lines.
.ONESHELL:
.DELETE_ON_ERROR:

CARGO       ?= cargo
MANDOC      ?= mandoc
INSTALL     ?= install
PREFIX      ?= /usr/local
DESTDIR     ?=
SBINDIR     := $(PREFIX)/sbin
MAN8DIR     := $(PREFIX)/share/man/man8
DOCDIR      := $(PREFIX)/share/doc/poplar
MUSL_TARGET := x86_64-unknown-linux-musl
BIN         := target/release/poplar
# Cargo.toml's [profile.static]: release settings with opt-level "s".
STATIC_BIN  := target/$(MUSL_TARGET)/static/poplar
MANPAGE     := man/poplar.8
# Installed into $(DOCDIR), with /usr/local/sbin in them replaced by $(SBINDIR).
EXAMPLES    := inetd.conf xinetd.pop3 poplar.socket poplar@.service poplar.service poplar-standalone.socket \
               poplar.conf fail2ban-filter.conf fail2ban-jail.conf
DEMO_ADDR   := 127.0.0.1:1110
# The man page and the examples name the binary and the examples where the default PREFIX puts them;
# installed, they name where this PREFIX does.
PATHS_SED   := -e 's|/usr/local/share/doc/poplar|$(DOCDIR)|g' -e 's|/usr/local/sbin|$(SBINDIR)|g'

.PHONY: all build test lint-man run static check-static install uninstall clean bench fuzz

all: build

build:
	$(CARGO) build --release

# --all-targets builds and runs the unit tests and every tests/*.rs (which start target/debug/poplar).
# The crate has no doctests. check-static builds the musl binary once (a release LTO build). Then the
# build without the `tls` feature: its unit tests and tests/no_tls.rs, in a target directory of its own
# so that target/debug/poplar stays the full build. The last line sums every test binary's result, so
# the run ends with one total ("total: N passed, N failed") rather than the last binary's count.
test: lint-man check-static
	mkdir -p target
	$(CARGO) test --all-targets 2>&1 | tee target/test.log
	CARGO_TARGET_DIR=target/no-tls $(CARGO) test --no-default-features --lib --test no_tls 2>&1 | tee -a target/test.log
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "total: %d passed, %d failed\n", p, f }' target/test.log

# The fuzz targets live in fuzz/, a workspace of their own. cargo-fuzz passes nightly-only compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Install it once: `cargo install cargo-fuzz`.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= command passwd_file maildir_name maildir_uidl line body location mbox_scan proxy config_file scram uidl_format crypt_hash
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is required (cargo install cargo-fuzz)" >&2; exit 1; }
	cd fuzz
	for t in $(FUZZ_TARGETS); do
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O "$$t" -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096
	done

lint-man:
	@command -v $(MANDOC) >/dev/null || { echo "lint-man: mandoc is required (Debian: apt-get install mandoc)" >&2; exit 1; }
	out=$$($(MANDOC) -Tlint $(MANPAGE) 2>&1) || true
	if [ -n "$$out" ]; then printf '%s\n' "$$out" >&2; echo "lint-man: $(MANPAGE) is not clean" >&2; exit 1; fi
	echo "lint-man: $(MANPAGE) is clean"

# benches/pop3bench.rs starts target/release/poplar, so that is built first (Cargo.toml keeps the bench
# profile equal to the release profile, so `cargo bench` links the same binary there). PEER names the peers to run
# beside poplar and the trivial ceiling: dovecot, popa3d, reader (the trivial server reading each
# message's file), or several in one run (PEER=dovecot,popa3d), one table column each. It is passed through the environment; the bench installs and configures the peers
# itself (it is never CI's job).
PEER ?=
bench:
	$(CARGO) build --release
	PEER='$(PEER)' $(CARGO) bench --bench pop3bench

# The release binary as a file, for install: `make build` as a user, then `sudo make install` does not
# run cargo again unless a source changed.
$(BIN): Cargo.toml Cargo.lock $(shell find src -name '*.rs' 2>/dev/null)
	$(CARGO) build --release

# A demo maildrop in a fresh temporary folder, removed when the server stops.  The passwd-file gives
# demo the home TMP/demo and the mail location maildir:%h/Maildir puts the messages in TMP/demo/Maildir.
# The messages are delivered as Maildir does (files in new/, oldest first by mtime), and show the
# interesting cases: a multi-line body, lines starting with '.', and a last line without a newline.
run: $(BIN)
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/poplar-demo.XXXXXX")
	trap 'rm -rf "$$tmp"' EXIT
	md="$$tmp/demo/Maildir"
	mkdir -p "$$md/new" "$$md/cur" "$$md/tmp"
	# The account needs a uid and gid: run as root, poplar never opens a maildrop as root, so the demo
	# maildrop belongs to nobody (65534) and each session takes on that identity for its file access.
	if [ "$$(id -u)" -eq 0 ]; then ids=65534:65534; else ids=$$(id -u):$$(id -g); fi
	printf 'demo:{PLAIN}demo:%s::%s/demo::\n' "$$ids" "$$tmp" > "$$tmp/passwd"
	chmod 600 "$$tmp/passwd"
	now=$$(date +%s)
	deliver() { # deliver AGE NAME: stdin becomes new/<unique name>, AGE seconds old
		local t=$$((now - $$1)) f="$$md/new/$$(( now - $$1 )).M$$2P$$$$.poplar-demo"
		cat > "$$f"; touch -d "@$$t" "$$f"
	}
	printf '%s\n' \
		'From: Poplar Team <team@example.org>' \
		'To: Demo User <demo@example.org>' \
		'Subject: Welcome to poplar' \
		"Date: $$(date -R -d "@$$((now - 300))")" \
		'Message-ID: <welcome.1@example.org>' \
		'MIME-Version: 1.0' \
		'Content-Type: text/plain; charset=us-ascii' \
		'' \
		'Hello,' \
		'' \
		'this is the first message in the demo maildrop.  Fetch it with' \
		'RETR 1, look at its headers with TOP 1 0, and list the others' \
		'with LIST or UIDL.' \
		'' \
		'Messages you DELE are removed only when you QUIT; drop the' \
		'connection instead and they are all still here next time.' \
		'' \
		'-- ' \
		'poplar' | deliver 300 1
	printf '%s\n' \
		'From: Alice Example <alice@example.net>' \
		'To: demo@example.org' \
		'Subject: Lines that start with a dot' \
		"Date: $$(date -R -d "@$$((now - 200))")" \
		'Message-ID: <dots.2@example.net>' \
		'' \
		'A POP3 server must byte-stuff lines beginning with a dot (RFC 1939,' \
		'section 3), so the three lines below arrive intact:' \
		'' \
		'.profile and .bashrc are hidden files' \
		'.' \
		'..and a line that already had two dots' \
		'' \
		'Alice' | deliver 200 2
	printf '%s\n' \
		'From: Bob Example <bob@example.com>' \
		'To: demo@example.org' \
		'Subject: No newline at the end' \
		"Date: $$(date -R -d "@$$((now - 100))")" \
		'Message-ID: <nonl.3@example.com>' \
		'' \
		'The last line of this file has no line feed; the server still ends it' > "$$tmp/msg3"
	printf '%s' 'with CRLF before the terminating dot.' >> "$$tmp/msg3"
	deliver 100 3 < "$$tmp/msg3"; rm -f "$$tmp/msg3"
	printf '%s\n' \
		'From: Carol Example <carol@example.com>' \
		'To: Demo User <demo@example.org>' \
		'Cc: Alice Example <alice@example.net>' \
		'Subject: Meeting notes' \
		"Date: $$(date -R -d "@$$((now - 10))")" \
		'Message-ID: <notes.4@example.com>' \
		'In-Reply-To: <dots.2@example.net>' \
		'' \
		'Notes from Thursday:' \
		'' \
		'  1. Maildir: new/ and cur/ are read, tmp/ never is.' \
		'  2. UIDL is the unique part of the file name.' \
		'  3. One session per maildrop; a second one gets [IN-USE].' \
		'' \
		'Carol' | deliver 10 4
	chown -R "$$ids" "$$tmp/demo"
	chmod 711 "$$tmp"  # mktemp's 0700 would keep the demo user from reaching its own maildrop
	py='import poplib; p = poplib.POP3("127.0.0.1", 1110); p.user("demo"); p.pass_("demo"); print(p.stat()); print(b"\n".join(p.retr(2)[1]).decode()); p.quit()'
	printf '%s\n' '' \
		"  poplar demo: user demo, password demo, $$(ls "$$md/new" | wc -l) messages in $$md" \
		'' \
		'  Try it from another terminal:' \
		'    curl pop3://demo:demo@$(DEMO_ADDR)/        (list the messages)' \
		'    curl pop3://demo:demo@$(DEMO_ADDR)/1       (fetch message 1)' \
		"    python3 -c '$$py'" \
		'' \
		"  Ctrl-C stops the server and removes $$tmp." \
		''
	$(BIN) --listen $(DEMO_ADDR) --passwd "$$tmp/passwd" --mail 'maildir:%h/Maildir' \
		--timeout 600 --log-level info || status=$$?
	exit $${status:-0}

static:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(MUSL_TARGET)'; then
		echo "static: adding the $(MUSL_TARGET) target with rustup"
		rustup target add $(MUSL_TARGET)
	fi
	$(CARGO) build --profile static --target $(MUSL_TARGET)
	echo "$(STATIC_BIN): $$(stat -c %s $(STATIC_BIN)) bytes"

# The static binary must need nothing at run time: file(1) says "statically linked" (or "static-pie
# linked": Rust's musl target builds a position-independent static executable, so ASLR still works),
# and ldd(1) finds no shared objects.
check-static: static
	@info=$$(file -b $(STATIC_BIN))
	deps=$$(ldd $(STATIC_BIN) 2>&1 || true)
	echo "file: $$info"; echo "ldd: $$deps"
	case "$$info" in *"dynamically linked"*|*interpreter*) echo "check-static: dynamically linked" >&2; exit 1;; esac
	case "$$info" in *"statically linked"*|*"static-pie linked"*) ;; *) echo "check-static: file does not say static" >&2; exit 1;; esac
	case "$$deps" in *"not a dynamic executable"*|*"statically linked"*) ;; *) echo "check-static: ldd found dependencies" >&2; exit 1;; esac
	echo "check-static: $(STATIC_BIN) has no dynamic dependencies"

# `make install BIN=path` installs that binary as it is; by default target/release/poplar is built first.
ifeq ($(origin BIN),command line)
INSTALL_DEPS :=
else
INSTALL_DEPS := $(BIN)
endif

install: $(INSTALL_DEPS)
	$(INSTALL) -d "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(MAN8DIR)" "$(DESTDIR)$(DOCDIR)"
	$(INSTALL) -m 0755 $(BIN) "$(DESTDIR)$(SBINDIR)/poplar"
	sed $(PATHS_SED) $(MANPAGE) > "$(DESTDIR)$(MAN8DIR)/poplar.8"
	chmod 0644 "$(DESTDIR)$(MAN8DIR)/poplar.8"
	for f in $(EXAMPLES); do
		sed $(PATHS_SED) "man/examples/$$f" > "$(DESTDIR)$(DOCDIR)/$$f"
		chmod 0644 "$(DESTDIR)$(DOCDIR)/$$f"
	done

uninstall:
	rm -f "$(DESTDIR)$(SBINDIR)/poplar" "$(DESTDIR)$(MAN8DIR)/poplar.8"
	for f in $(EXAMPLES); do rm -f "$(DESTDIR)$(DOCDIR)/$$f"; done
	rmdir "$(DESTDIR)$(DOCDIR)" 2>/dev/null || true

clean:
	$(CARGO) clean
