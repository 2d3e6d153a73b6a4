#!/usr/bin/env bash
# Assembles Baton's runtime root filesystem from built binaries: the programs, the shared
# libraries `ldd` names for them (with the dynamic loader), CA certificates, and /etc/passwd
# and /etc/group with the non-root user `baton` (65532) that owns /data. The Containerfile's
# last stage is this directory (`FROM scratch`, `COPY`), so the image and a root filesystem
# made offline on a machine that cannot pull images are the same; the test suite runs the
# latter under chroot.
#
#   deploy/image/rootfs.sh --out DIR --baton PATH [--nats-server PATH] [--helm PATH]
#
# nats-server (static) lets `baton up` run its own bus inside the image; helm (static) is what
# the helm worker's `cli` driver runs. Both are optional.
set -euo pipefail

out="" baton="" nats="" helm=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --baton) baton="$2"; shift 2 ;;
    --nats-server) nats="$2"; shift 2 ;;
    --helm) helm="$2"; shift 2 ;;
    *) echo "rootfs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$out" && -n "$baton" ]] || { echo "usage: rootfs.sh --out DIR --baton PATH [--nats-server PATH] [--helm PATH]" >&2; exit 2; }
for program in "$baton" "$nats" "$helm"; do
  [[ -z "$program" || -x "$program" ]] || { echo "rootfs.sh: $program is not an executable file" >&2; exit 2; }
done

uid=65532
rm -rf "$out"
mkdir -p "$out"/{usr/local/bin,etc/ssl/certs,data,tmp,dev,proc}
chmod 1777 "$out/tmp"

install -m 0755 "$baton" "$out/usr/local/bin/baton"
# Debug information (line tables, 200 MB of a 260 MB release binary) stays with the build;
# symbols stay, so a panic's backtrace still names its functions.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$out/usr/local/bin/baton"
fi
[[ -z "$nats" ]] || install -m 0755 "$nats" "$out/usr/local/bin/nats-server"
[[ -z "$helm" ]] || install -m 0755 "$helm" "$out/usr/local/bin/helm"

# Every shared library a program needs, at the path the loader looks for it (the target of a
# symlink is copied under the link's name), and the loader itself. A static program has none.
copy_libraries() {
  local program="$1" line path
  while read -r line; do
    case "$line" in
      *"=> /"*) path="${line#*=> }"; path="${path%% (*}" ;;
      /*) path="${line%% (*}" ;;
      *) continue ;;
    esac
    mkdir -p "$out$(dirname "$path")"
    cp -L "$path" "$out$path"
  done < <(ldd "$program" 2>/dev/null || true)
}
for program in "$out"/usr/local/bin/*; do
  copy_libraries "$program"
done

# The CA bundle of the build machine (Debian's ca-certificates): rustls' native roots and
# Go's crypto/x509 both read this path.
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -f "$bundle" ]] || { echo "rootfs.sh: $bundle is missing (install ca-certificates)" >&2; exit 2; }
cp -L "$bundle" "$out/etc/ssl/certs/ca-certificates.crt"

cat > "$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
baton:x:$uid:$uid:baton:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<GROUP
root:x:0:
baton:x:$uid:
nobody:x:65534:
GROUP
echo "hosts: files dns" > "$out/etc/nsswitch.conf"
# Owned by the user only where this script may give it away (as root, or in the build stage).
chown "$uid:$uid" "$out/data" 2>/dev/null || true
chmod 0755 "$out/data"
