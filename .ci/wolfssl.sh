#!/usr/bin/env bash
# Build wolfSSL's example client and server with DTLS 1.3 and external PSKs, for
# tests/interop/test_wolfssl_self.py and tests/vectors/capture_wolfssl.py.
#
# Debian 12's libwolfssl has no DTLS 1.3, so this takes Debian unstable's `wolfssl` SOURCE
# package through a private apt configuration (the machine's own sources and lists are not
# touched), unpacks it with dpkg-source (or, when the mirror has the upstream tarball but not
# the .dsc, as seen for 5.9.2-1.2, that tarball after checking its SHA-256 against the signed
# Sources index), configures and builds the two examples, runs one handshake between them,
# and installs them into a cache folder:
#
#   $DTLS_WOLFSSL_DIR (default /var/cache/dtlspipe/wolfssl)
#     bin/client, bin/server   the statically linked examples
#     certs/                   the files the examples need to start (certs/dh2048.pem
#                              marks the "wolf root" they look for)
#     VERSION                  the stamp: first line is the recipe; a second run with the
#                              same recipe does nothing
#
# Run as root (apt-get). Network: Debian mirrors only. Optional: DTLS_WOLFSSL_DEBIAN_VERSION
# pins the source package version (e.g. 5.9.2-1); by default unstable's current one is taken.
# DTLS_WOLFSSL_TICKETS=1 builds the variant with session tickets (--enable-session-ticket),
# by default into /var/cache/dtlspipe/wolfssl-tickets, for
# tests/interop/test_wolfssl13_resumption.py. It is a build of its own because with tickets
# the example server often answers without printing the client's line (its read returns 0
# after taking the ACK of its NewSessionTicket), which the other interop tests read.
set -euo pipefail

TICKETS=${DTLS_WOLFSSL_TICKETS:-0}
if [ "$TICKETS" = 1 ]; then
    DEST=${DTLS_WOLFSSL_DIR:-/var/cache/dtlspipe/wolfssl-tickets}
else
    DEST=${DTLS_WOLFSSL_DIR:-/var/cache/dtlspipe/wolfssl}
fi
PIN=${DTLS_WOLFSSL_DEBIAN_VERSION:-}
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
CONFIGURE_FLAGS=(
    --enable-dtls --enable-dtls13 --enable-psk --enable-dtlscid --enable-aesccm
    --enable-chacha --enable-curve25519 --enable-hrrcookie --enable-dtls-mtu --enable-keylog-export
    --disable-shared --enable-static
)
[ "$TICKETS" = 1 ] && CONFIGURE_FLAGS+=(--enable-session-ticket)
# Bump RECIPE_REV when this script changes what ends up in $DEST.
RECIPE_REV=2
RECIPE="wolfssl.sh rev $RECIPE_REV; source ${PIN:-unstable}; ${CONFIGURE_FLAGS[*]}"
# The files from certs/ the examples need in PSK mode (the smoke test below shows it is enough).
CERT_FILES=(dh2048.pem)

started=$SECONDS
step() { echo "wolfssl.sh: $*"; }
die() {
    echo "wolfssl.sh: FAILED: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------- up to date?
if [ -f "$DEST/VERSION" ] && [ "$(head -n 1 "$DEST/VERSION")" = "recipe: $RECIPE" ] \
    && [ -x "$DEST/bin/client" ] && [ -x "$DEST/bin/server" ] && [ -f "$DEST/certs/dh2048.pem" ]
then
    step "up to date in $DEST ($(sed -n 's/^upstream: //p' "$DEST/VERSION")), nothing to do"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (apt-get installs the build tools)"

work=$(mktemp -d /tmp/dtlspipe-wolfssl.XXXXXX)
stage=""
cleanup() { rm -rf "$work" ${stage:+"$stage"}; }
trap cleanup EXIT
chmod 0755 "$work"
log=$work/build.log
: >"$log"
# Run a step's command with its output in the log; on failure show the log's end and stop.
run_logged() {
    local what=$1
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "wolfssl.sh: FAILED: $what; last lines of the log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------- tools
need_pkgs=()
command -v dpkg-source >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
install_pkgs() {
    # Debian's own (bookworm) packages; `apt-get update` only when an install fails without it.
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$log" 2>&1; then
        run_logged "apt-get update" apt-get update -q
        run_logged "apt-get install $*" env DEBIAN_FRONTEND=noninteractive \
            apt-get install "${opts[@]}" "$@"
    fi
}
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    step "installing build tools: ${need_pkgs[*]}"
    install_pkgs "${need_pkgs[@]}"
else
    step "build tools present (dpkg-source, make, gcc)"
fi
[ -r "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"

# ---------------------------------------------------------------------------- fetch source
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d" \
    "$apt_dir/preferences.d" "$work/src"
echo "deb-src [signed-by=$KEYRING] $MIRROR unstable main" >"$apt_dir/sources.list"
apt_opts=(
    -q
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
    -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Get::List-Cleanup=false"
    -o "Acquire::Languages=none"
)
# apt downloads as the _apt user: let it write where the files land.
if id _apt >/dev/null 2>&1; then
    chown -R _apt:root "$apt_dir/lists" "$apt_dir/cache" "$work/src"
fi
step "apt-get update (private configuration: deb-src $MIRROR unstable main)"
run_logged "apt-get update of the private unstable deb-src list" apt-get "${apt_opts[@]}" update
spec=wolfssl${PIN:+=$PIN}
step "apt-get source --download-only $spec"
cd "$work/src"
if ! apt-get "${apt_opts[@]}" source --download-only "$spec" >>"$log" 2>&1; then
    # A mirror whose pool lags behind its index may lack the .dsc and the Debian packaging
    # tarball while it has the upstream tarball (seen here for 5.9.2-1.2): take that alone.
    step "the full source package could not be fetched; apt-get source --download-only --tar-only $spec"
    rm -f ./*.dsc ./*.debian.tar.* ./*.diff.gz
    run_logged "apt-get source --download-only $spec (neither the full package nor its tarball)" \
        apt-get "${apt_opts[@]}" source --download-only --tar-only "$spec"
fi
cd "$work"
showsrc=$work/showsrc.txt
apt-cache "${apt_opts[@]}" showsrc wolfssl >"$showsrc" || die "apt-cache showsrc wolfssl failed"
if [ -n "$PIN" ]; then
    debian_version=$PIN
else
    debian_version=$(awk '/^Version: / {print $2}' "$showsrc" | sort -V | tail -n 1)
fi
[ -n "$debian_version" ] || die "apt-cache showsrc wolfssl shows no Version"
# sha256_of FILE: its SHA-256 in the signed Sources entry of $debian_version
sha256_of() {
    awk -v v="$debian_version" -v f="$1" '
        /^Package: / {inpkg = 0; sums = 0}
        /^Version: / {inpkg = ($2 == v)}
        /^Checksums-Sha256:/ {sums = 1; next}
        /^[^ ]/ {sums = 0}
        inpkg && sums && $3 == f {print $1; exit}' "$showsrc"
}
srcdir=$work/src/wolfssl
dsc=$(find "$work/src" -maxdepth 1 -name 'wolfssl_*.dsc' -print -quit)
if [ -n "$dsc" ]; then
    step "unpacking $(basename "$dsc") (Debian $debian_version) with dpkg-source -x"
    # apt has just checked every file against the signed index (InRelease -> Sources).
    run_logged "dpkg-source -x $dsc" dpkg-source --no-check -x "$dsc" "$srcdir"
    source_kind="Debian source package $debian_version"
else
    orig=$(find "$work/src" -maxdepth 1 -name 'wolfssl_*.orig.tar.*' ! -name '*.asc' -print -quit)
    [ -n "$orig" ] || die "apt-get source brought neither a .dsc nor an orig tarball"
    # apt checked it already; check once more against the signed Sources entry, by hand.
    want=$(sha256_of "$(basename "$orig")")
    got=$(sha256sum "$orig" | cut -d ' ' -f 1)
    [ -n "$want" ] && [ "$want" = "$got" ] \
        || die "$(basename "$orig"): SHA-256 $got, the signed Sources index says ${want:-nothing}"
    step "unpacking $(basename "$orig") (upstream tarball of Debian $debian_version, SHA-256 ok) with tar"
    mkdir -p "$srcdir"
    run_logged "tar -xf $orig" tar -xf "$orig" -C "$srcdir" --strip-components=1
    source_kind="upstream tarball $(basename "$orig") of Debian $debian_version (no .dsc on the mirror)"
fi

# ---------------------------------------------------------------------------- configure
cd "$srcdir"
if [ ! -x configure ]; then
    autotools=()
    command -v autoreconf >/dev/null 2>&1 || autotools+=(autoconf)
    command -v automake >/dev/null 2>&1 || autotools+=(automake)
    command -v libtoolize >/dev/null 2>&1 || autotools+=(libtool)
    if [ "${#autotools[@]}" -gt 0 ]; then
        step "no configure script in the source: installing ${autotools[*]}"
        install_pkgs "${autotools[@]}"
    fi
    step "autoreconf -fi"
    run_logged "autoreconf -fi" autoreconf -fi
fi
step "configure ${CONFIGURE_FLAGS[*]}"
run_logged "configure" ./configure "${CONFIGURE_FLAGS[@]}"

# ---------------------------------------------------------------------------- build
step "make -j2 examples/server/server examples/client/client"
run_logged "make" make -j2 examples/server/server examples/client/client
for prog in server client; do
    bin=examples/$prog/$prog
    # libtool may leave a wrapper script with the real program in .libs/ (only with shared)
    [ -x "examples/$prog/.libs/$prog" ] && bin=examples/$prog/.libs/$prog
    [ -x "$bin" ] || die "$bin was not built"
    file_type=$(head -c 4 "$bin" | od -An -c | tr -d ' ')
    [ "$file_type" = 177ELF ] || die "$bin is not an ELF program"
done
upstream=$(sed -n 's/^#define LIBWOLFSSL_VERSION_STRING "\(.*\)"$/\1/p' wolfssl/version.h)
[ -n "$upstream" ] || die "no LIBWOLFSSL_VERSION_STRING in wolfssl/version.h"

# ---------------------------------------------------------------------------- install
step "installing into $DEST (wolfSSL $upstream)"
mkdir -p "$(dirname "$DEST")"
stage=$(mktemp -d "$DEST.new.XXXXXX")
mkdir -p "$stage/bin" "$stage/certs"
for prog in server client; do
    bin=examples/$prog/$prog
    [ -x "examples/$prog/.libs/$prog" ] && bin=examples/$prog/.libs/$prog
    install -m 0755 "$bin" "$stage/bin/$prog"
done
for f in "${CERT_FILES[@]}"; do
    install -m 0644 "certs/$f" "$stage/certs/$f"
done
install -m 0644 COPYING "$stage/COPYING"
# Smoke test of the install itself, before it is stamped: a DTLS 1.3 PSK handshake between
# the two programs on 127.0.0.1, each in a folder with only the installed certs/ (they refuse
# to start without certs/dh2048.pem at most five levels above their working directory).
step "smoke test: client against server, DTLS 1.3 PSK on 127.0.0.1"
mkdir -p "$work/check/server" "$work/check/client"
ln -s "$stage/certs" "$work/check/server/certs"
ln -s "$stage/certs" "$work/check/client/certs"
smoke_ok=0
for _try in 1 2 3; do
    port=$((20000 + RANDOM % 40000))
    hexport=$(printf '%04X' "$port")
    grep -q ":$hexport " /proc/net/udp && continue
    (cd "$work/check/server" && exec timeout 20 "$stage/bin/server" -u -v 4 -s -p "$port" \
        -l TLS13-AES128-GCM-SHA256 >server.out 2>&1) &
    server_pid=$!
    for _wait in $(seq 50); do
        grep -q "^ *[0-9]*: 0100007F:$hexport " /proc/net/udp && break
        sleep 0.1
    done
    (cd "$work/check/client" && timeout 20 "$stage/bin/client" -u -v 4 -s -p "$port" \
        -l TLS13-AES128-GCM-SHA256 >client.out 2>&1) || true
    wait "$server_pid" || true
    if grep -q 'I hear you fa shizzle!' "$work/check/client/client.out"; then
        smoke_ok=1
        break
    fi
done
if [ "$smoke_ok" != 1 ]; then
    echo "wolfssl.sh: FAILED: the smoke test did not complete a handshake; its output:" >&2
    cat "$work/check/server/server.out" "$work/check/client/client.out" >&2 || true
    exit 1
fi
chmod 0755 "$stage"
{
    echo "recipe: $RECIPE"
    echo "upstream: $upstream"
    echo "debian-source: wolfssl $debian_version ($MIRROR unstable): $source_kind"
    echo "configure: ${CONFIGURE_FLAGS[*]}"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
} >"$stage/VERSION"
rm -rf "$DEST.old"
[ -e "$DEST" ] && mv "$DEST" "$DEST.old"
mv "$stage" "$DEST"
stage=""
rm -rf "$DEST.old"
step "done in $((SECONDS - started)) s: $DEST/bin/server, $DEST/bin/client (wolfSSL $upstream)"
