# Install sockexit as a system component, or build a Debian package of it.
#
#   make                                  # cargo build --release (the library and the command)
#   make install DESTDIR=/tmp/root PREFIX=/usr
#   make deb                              # target/debian/sockexit_VERSION_ARCH.deb
#
# PROFILE=debug installs the debug build instead (the tests do); NOBUILD=1 installs
# what is already built without running cargo.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/sockexit
SYSCONFDIR ?= /etc
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR    ?=

CARGO   ?= cargo
STRIP   ?= strip
INSTALL ?= install
PROFILE ?= release
CARGO_TARGET_DIR ?= target
OUT  := $(CARGO_TARGET_DIR)/$(PROFILE)
GEN  ?= $(CARGO_TARGET_DIR)/install-gen
# The front (libsockexit.so) of a release build is built with the `front` profile
# (panic = "abort", no standard library: what every program pays to load).
ifeq ($(PROFILE),release)
PROFILE_FLAG := --release
FRONT_FLAG := --profile front
FRONT_OUT := $(CARGO_TARGET_DIR)/front
else ifeq ($(PROFILE),debug)
PROFILE_FLAG :=
FRONT_FLAG :=
FRONT_OUT := $(OUT)
else
PROFILE_FLAG := --profile $(PROFILE)
FRONT_FLAG := $(PROFILE_FLAG)
FRONT_OUT := $(OUT)
endif

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEBROOT := $(CARGO_TARGET_DIR)/debian/sockexit_$(VERSION)_$(ARCH)
DEB     := $(CARGO_TARGET_DIR)/debian/sockexit_$(VERSION)_$(ARCH).deb

.PHONY: all build gen install uninstall deb clean-install

all: build

build:
ifndef NOBUILD
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) build $(PROFILE_FLAG) -p sockexit --lib
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) build $(FRONT_FLAG) -p sockexit-front --lib
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) $(CARGO) build $(PROFILE_FLAG) -p sockexit-cli --bin sockexit
endif

# Man pages and completions from the command's own clap definition.
gen: build
	rm -rf $(GEN)
	$(OUT)/sockexit __generate-docs --man $(GEN)/man --completions $(GEN)/completions

install: gen
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/sockexit \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
		$(DESTDIR)$(DOCDIR)/examples/systemd/nginx.service.d \
		$(DESTDIR)$(DOCDIR)/examples/fail2ban \
		$(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/sockexit $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
		$(DESTDIR)$(SYSCONFDIR)/fail2ban/action.d
	$(INSTALL) -m 0755 $(OUT)/sockexit $(DESTDIR)$(BINDIR)/sockexit
	$(STRIP) --strip-all --remove-section=.comment --remove-section=.note $(DESTDIR)$(BINDIR)/sockexit
	$(INSTALL) -m 0644 $(FRONT_OUT)/libsockexit.so $(DESTDIR)$(LIBDIR)/sockexit/libsockexit.so
	$(STRIP) --strip-unneeded --remove-section=.comment --remove-section=.note $(DESTDIR)$(LIBDIR)/sockexit/libsockexit.so
	$(INSTALL) -m 0644 $(OUT)/libsockexit_core.so $(DESTDIR)$(LIBDIR)/sockexit/libsockexit_core.so
	$(STRIP) --strip-unneeded --remove-section=.comment --remove-section=.note $(DESTDIR)$(LIBDIR)/sockexit/libsockexit_core.so
	for f in $(GEN)/man/*.1; do \
		gzip -9n -c $$f > $(DESTDIR)$(MANDIR)/man1/$$(basename $$f).gz; done
	gzip -9n -c man/sockexit-policy.5 > $(DESTDIR)$(MANDIR)/man5/sockexit-policy.5.gz
	gzip -9n -c man/libsockexit.8 > $(DESTDIR)$(MANDIR)/man8/libsockexit.8.gz
	$(INSTALL) -m 0644 $(GEN)/completions/sockexit.bash $(DESTDIR)$(BASHCOMPDIR)/sockexit
	$(INSTALL) -m 0644 $(GEN)/completions/_sockexit $(DESTDIR)$(ZSHCOMPDIR)/_sockexit
	$(INSTALL) -m 0644 $(GEN)/completions/sockexit.fish $(DESTDIR)$(FISHCOMPDIR)/sockexit.fish
	$(INSTALL) -m 0644 contrib/policy.yaml $(DESTDIR)$(SYSCONFDIR)/sockexit/policy.yaml
	$(INSTALL) -m 0644 contrib/logrotate/sockexit $(DESTDIR)$(SYSCONFDIR)/logrotate.d/sockexit
	$(INSTALL) -m 0644 contrib/fail2ban/action.d/sockexit.conf \
		$(DESTDIR)$(SYSCONFDIR)/fail2ban/action.d/sockexit.conf
	$(INSTALL) -m 0644 contrib/fail2ban/jail.d/sockexit.conf \
		$(DESTDIR)$(DOCDIR)/examples/fail2ban/jail.conf
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/sockexit-apply.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/sockexit-apply.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/sockexit-apply.service
	$(INSTALL) -m 0644 examples/wrappers/systemd/nginx.service.d/sockexit.conf \
		$(DESTDIR)$(DOCDIR)/examples/systemd/nginx.service.d/sockexit.conf
	$(INSTALL) -m 0644 README.md docs/install.md $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockexit $(DESTDIR)$(LIBDIR)/sockexit/libsockexit.so \
		$(DESTDIR)$(LIBDIR)/sockexit/libsockexit_core.so
	-rmdir $(DESTDIR)$(LIBDIR)/sockexit
	rm -f $(DESTDIR)$(MANDIR)/man1/sockexit.1.gz $(DESTDIR)$(MANDIR)/man1/sockexit-*.1.gz \
		$(DESTDIR)$(MANDIR)/man5/sockexit-policy.5.gz $(DESTDIR)$(MANDIR)/man8/libsockexit.8.gz
	rm -f $(DESTDIR)$(BASHCOMPDIR)/sockexit $(DESTDIR)$(ZSHCOMPDIR)/_sockexit \
		$(DESTDIR)$(FISHCOMPDIR)/sockexit.fish $(DESTDIR)$(SYSTEMDUNITDIR)/sockexit-apply.service
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "kept $(SYSCONFDIR)/sockexit, $(SYSCONFDIR)/logrotate.d/sockexit and $(SYSCONFDIR)/fail2ban/action.d/sockexit.conf (configuration)"

# A Debian package of exactly what `make install PREFIX=/usr` installs, built with
# dpkg-deb from that tree (nothing beyond dpkg and cargo is needed).
deb:
	rm -rf $(DEBROOT)
	$(MAKE) install DESTDIR=$(abspath $(DEBROOT)) PREFIX=/usr
	$(INSTALL) -d -m 0755 $(DEBROOT)/DEBIAN $(DEBROOT)/usr/share/doc/sockexit \
		$(DEBROOT)/usr/share/lintian/overrides
	cp debian/copyright $(DEBROOT)/usr/share/doc/sockexit/copyright
	gzip -9n -c debian/changelog > $(DEBROOT)/usr/share/doc/sockexit/changelog.gz
	$(INSTALL) -m 0644 debian/lintian-overrides $(DEBROOT)/usr/share/lintian/overrides/sockexit
	cd $(DEBROOT) && find etc -type f | sed 's|^|/|' | sort > DEBIAN/conffiles
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' \
		-e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEBROOT) | cut -f1)/" \
		-e "s/@GLIBC@/$$(objdump -T $(DEBROOT)/usr/bin/sockexit $(DEBROOT)/usr/lib/sockexit/libsockexit.so $(DEBROOT)/usr/lib/sockexit/libsockexit_core.so | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)/" \
		debian/control > $(DEBROOT)/DEBIAN/control
	cd $(DEBROOT) && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort \
		| xargs md5sum > DEBIAN/md5sums
	chmod 0644 $(DEBROOT)/DEBIAN/md5sums $(DEBROOT)/DEBIAN/conffiles $(DEBROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEBROOT) $(DEB)
	@echo "built $(DEB)"
