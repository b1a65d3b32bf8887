#!/usr/bin/env bash
# Proves the README's Raspberry Pi install on an emulated Raspberry Pi OS (64-bit) userland:
# Debian bookworm arm64 made with debootstrap, run under qemu-user-static via binfmt_misc.
#
# Inside it, as user `pi`, it follows the README's Raspberry Pi steps: apt's git python3-venv
# python3-pip python3-numpy python3-opencv python3-pil (python3-picamera2 is only in Raspberry
# Pi's archive), a `--system-site-packages` venv, `pip install ~/edgecam` of a copy of this
# working tree (base install: no [train], so no TensorFlow). Then it checks that
#   - numpy in the venv is still apt's 1.24.2 (from /usr/lib/python3/dist-packages),
#   - tensorflow is not importable,
#   - `edgecam evaluate` gives the same labels (scores within 1e-3) as on this x86-64 host,
#   - `edgecam run --source VIDEO --headless` gives the same top label per frame as the host
#     (skipped, with a SKIP line, while `edgecam run` does not exist).
#
# Usage (as root; needs Debian's packages and PyPI, installs qemu-user-static binfmt-support
# debootstrap with apt when missing):
#   bash scripts/pi_emulation.sh [--root DIR] [--keep] [--fresh] [--model MODEL.tflite]
#                                [--data DIR] [--video VIDEO]
#   --root DIR    the emulated root [default: ~/.cache/edgecam/pi-root, or under $XDG_CACHE_HOME]
#   --keep        keep the root afterwards; the next run reuses it (skips debootstrap and apt)
#   --fresh       rebuild the root even if a finished one exists
#   --model FILE  a .tflite to check [default: fine-tune one here on flowers-mini, ~1 min]
#   --data DIR    labelled photo folders for `edgecam evaluate` [default: ../shared/datasets/flowers-mini]
#   --video FILE  a video for `edgecam run` [default: made here from photos of --data]
# From scratch on a busy 2-core machine: ~30 min (debootstrap ~6, apt's 500 packages ~18, the
# rest ~5) and 2.2 GB; reusing a --keep root: ~5 min. Exits non-zero on any failed check; the
# last line is PASS (with the figures) or FAIL.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$repo/scripts/pi"
root="${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/pi-root"
keep=0
fresh=0
model=""
data="$repo/../shared/datasets/flowers-mini"
video=""
suite=bookworm
mirror=${EDGECAM_PI_MIRROR:-http://deb.debian.org/debian}
security_mirror=${EDGECAM_PI_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
host_venv=${EDGECAM_HOST_VENV:-$repo/.venv}
# README step 1, less python3-picamera2 (Raspberry Pi's own archive; Debian has none)
apt_packages=(git python3-venv python3-pip python3-numpy python3-opencv python3-pil)
qemu_cpu=cortex-a72   # must match the CPU in scripts/pi/cpuinfo-rpi4 (Cortex-A72, part 0xd08)
score_tol=1e-3

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --keep) keep=1; shift ;;
        --fresh) fresh=1; shift ;;
        --model) model=${2:?--model needs a file}; shift 2 ;;
        --data) data=${2:?--data needs a directory}; shift 2 ;;
        --video) video=${2:?--video needs a file}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

start=$SECONDS
step_start=$SECONDS
heading() {
    local now=$SECONDS
    [ "$step_start" = "$now" ] || [ -z "${current_step:-}" ] || echo "   ($((now - step_start)) s)"
    step_start=$now
    current_step=$1
    echo
    echo "=== [$(date +%H:%M:%S) +$((now - start))s] $1"
}
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "  $*"; }
elapsed() { local s=$((SECONDS - start)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
[ "$(uname -m)" = x86_64 ] || note "host is $(uname -m), not x86_64: the comparison is against this host"
for f in "$here/cpuinfo-rpi4" "$here/compare.py" "$here/make_video.py" "$here/decode_video.py"; do
    [ -f "$f" ] || fail "$f missing"
done
[ -x "$host_venv/bin/edgecam" ] || fail "$host_venv/bin/edgecam not found: run 'make install' first (or set EDGECAM_HOST_VENV)"
data=$(cd "$data" 2>/dev/null && pwd) || fail "data folder not found (--data)"
[ -z "$model" ] || model=$(realpath -e "$model") || fail "--model: file not found"
[ -z "$video" ] || video=$(realpath -e "$video") || fail "--video: file not found"
case $root in /*) ;; *) root=$PWD/$root ;; esac
root=${root%/}
[ -n "$root" ] && [ "$root" != / ] || fail "--root must not be /"

marker=.edgecam-pi-root          # written when we create the root: we only ever touch such a dir
base_stamp=.edgecam-pi-base-ok   # written when debootstrap and the base setup finished
root_checked=0                   # cleanup leaves $root alone until it is known to be ours
work=""

# ---------------------------------------------------------------------------------------------
# Mounts and cleanup: never delete a root that still has something mounted inside it.
# ---------------------------------------------------------------------------------------------
mounts_under_root() {  # mount points at or below $root, deepest first
    local real
    real=$(realpath -m "$root")
    awk -v r="$real" '{ p = $5; gsub(/\\040/, " ", p) } p == r || index(p, r "/") == 1 { print p }' \
        /proc/self/mountinfo | sort -r
}

unmount_root() {
    local mp left
    while IFS= read -r mp; do
        [ -n "$mp" ] || continue
        umount "$mp" 2>/dev/null || umount -l "$mp" || true
    done < <(mounts_under_root)
    left=$(mounts_under_root)
    if [ -n "$left" ]; then
        echo "still mounted under $root:" >&2
        echo "$left" >&2
        return 1
    fi
}

remove_root() {
    [ -e "$root" ] || return 0
    unmount_root || { echo "NOT deleting $root: mounts remain" >&2; return 1; }
    if [ -n "$(ls -A "$root" 2>/dev/null)" ] && [ ! -e "$root/$marker" ]; then
        echo "NOT deleting $root: it was not made by this script (no $marker)" >&2
        return 1
    fi
    rm -rf --one-file-system "$root"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ "$root_checked" = 1 ] && [ -d "$root" ]; then
        unmount_root || rc=1
        if [ "$keep" = 1 ]; then
            echo "kept the root: $root (the next run reuses it; a run without --keep removes it at its end)"
        elif [ -z "$(mounts_under_root)" ]; then
            remove_root && rm -f "$root.lock" || rc=1
        fi
    fi
    [ -z "$work" ] || rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted: cleaning up" >&2; exit 130' INT
trap 'echo "terminated: cleaning up" >&2; exit 143' TERM

[ ! -e "$root" ] || [ -d "$root" ] || fail "--root $root is not a directory"
if [ -d "$root" ] && [ -n "$(ls -A "$root")" ] && [ ! -e "$root/$marker" ]; then
    fail "$root exists and was not made by this script (no $marker): choose another --root"
fi
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || fail "another pi_emulation.sh run is using $root ($root.lock)"
root_checked=1
work=$(mktemp -d -t edgecam-pi-work.XXXXXX)

mount_root() {
    mkdir -p "$root/proc" "$root/sys" "$root/dev"
    mount -t proc proc "$root/proc"
    # LiteRT's CPU detection crashes on an x86 /proc/cpuinfo: show a Raspberry Pi 4's.
    cp "$here/cpuinfo-rpi4" "$root/etc/edgecam-pi-cpuinfo"
    mount --bind "$root/etc/edgecam-pi-cpuinfo" "$root/proc/cpuinfo"
    mount --bind /sys "$root/sys"
    mount -o remount,bind,ro "$root/sys" 2>/dev/null || true
    mount --bind /dev "$root/dev"
}

# Run a command in the root with a clean environment (nothing of the host's pip/venv setup).
chroot_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
            QEMU_CPU=$qemu_cpu PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
as_root() { env -i "${chroot_env[@]}" HOME=/root DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }
as_pi() { env -i "${chroot_env[@]}" HOME=/home/pi USER=pi LOGNAME=pi chroot --userspec=pi:pi "$root" "$@"; }

# ---------------------------------------------------------------------------------------------
heading "1. qemu-user-static and binfmt_misc"
missing=()
for pkg in qemu-user-static binfmt-support debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/status" ]; then
    note "mounting binfmt_misc on $binfmt"
    mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || {
        modprobe binfmt_misc 2>/dev/null || true
        mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null
    } || fail "cannot mount binfmt_misc: this kernel or sandbox does not allow running foreign binaries through binfmt_misc, so no arm64 emulation here"
fi
if [ ! -e "$binfmt/qemu-aarch64" ] || ! grep -qx enabled "$binfmt/qemu-aarch64"; then
    note "update-binfmts --enable qemu-aarch64"
    update-binfmts --enable qemu-aarch64 || true
fi
[ -e "$binfmt/qemu-aarch64" ] && grep -qx enabled "$binfmt/qemu-aarch64" \
    || fail "qemu-aarch64 is not registered in $binfmt (update-binfmts failed: the sandbox may forbid writing $binfmt/register)"
qemu_interp=$(awk '/^interpreter/ { print $2 }' "$binfmt/qemu-aarch64")
qemu_flags=$(awk '/^flags:/ { print $2 }' "$binfmt/qemu-aarch64")
note "qemu-aarch64: enabled, interpreter $qemu_interp, flags $qemu_flags ($(qemu-aarch64-static --version | head -1))"

# ---------------------------------------------------------------------------------------------
heading "2. Debian $suite arm64 root at $root"
if [ "$fresh" = 1 ] && [ -e "$root" ]; then
    note "--fresh: removing the old root"
    remove_root || fail "cannot remove $root"
fi
if [ -e "$root/$base_stamp" ]; then
    note "reusing the finished root ($(cat "$root/$base_stamp"))"
    unmount_root || fail "cannot unmount leftovers under $root"
else
    if [ -e "$root" ]; then
        note "removing an unfinished root"
        remove_root || fail "cannot remove $root"
    fi
    mkdir -p "$root"
    touch "$root/$marker"
    note "debootstrap --arch=arm64 --variant=minbase $suite (slow under emulation: ~6 min)"
    debootstrap --arch=arm64 --variant=minbase --include=ca-certificates,passwd \
        "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log"; fail "debootstrap failed"; }
    # apt sources as on Raspberry Pi OS (which adds its own archive for picamera2 etc.)
    cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"   # no services in a chroot
    chmod 755 "$root/usr/sbin/policy-rc.d"
    as_root useradd --create-home --shell /bin/bash pi
    date -u +"built %Y-%m-%dT%H:%M:%SZ" > "$root/$base_stamp"
fi
# [ -e $root/$marker ] is true from here on (older roots: add it)
touch "$root/$marker"
if [[ $qemu_flags != *F* ]]; then
    # binfmt without the fix-binary flag looks the interpreter up inside the root
    mkdir -p "$root$(dirname "$qemu_interp")"
    cp /usr/bin/qemu-aarch64-static "$root/usr/bin/"
    [ -e "$root$qemu_interp" ] || cp "$qemu_interp" "$root$qemu_interp"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
arch=$(as_root dpkg --print-architecture)
[ "$arch" = arm64 ] || fail "the root's dpkg says $arch, not arm64"
note "root: $(as_root uname -m), $(head -1 "$root/etc/debian_version" | sed 's/^/Debian /')"

# pip in the root needs this host's extra CA certificates (HTTPS goes through its proxy) and any
# http(s) package index this host's pip is set up with; host-only settings (file:// indexes,
# /opt/wheels, constraints) are left out.
# The certificates go where update-ca-certificates looks, and are appended to the root's bundle
# here on the host, as it would do (it takes minutes under emulation).
mkdir -p "$root/usr/local/share/ca-certificates"
bundle=$root/etc/ssl/certs/ca-certificates.crt
[ -s "$bundle" ] || fail "$bundle missing: ca-certificates did not install in the root"
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] || continue
    cp "$crt" "$root/usr/local/share/ca-certificates/"
    first_line=$(grep -v -e '-----' -e '^$' "$crt" | head -1)
    if ! grep -qF -- "$first_line" "$bundle"; then
        [ -z "$(tail -c1 "$bundle")" ] || echo >> "$bundle"
        cat "$crt" >> "$bundle"
        note "added $(basename "$crt") to the root's CA bundle"
    fi
done
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    python3 - "$host_venv/bin/pip" <<'PY'
import subprocess, sys
try:
    out = subprocess.run([sys.argv[1], "config", "list"], capture_output=True, text=True).stdout
except OSError:
    out = ""
want = {"index-url", "extra-index-url", "trusted-host"}
for line in out.splitlines():
    key, _, value = line.partition("=")
    name = key.split(".", 1)[-1]
    if name not in want:
        continue
    values = [v for v in value.strip("'\"").split() if name == "trusted-host" or v.startswith(("http://", "https://"))]
    if values:
        print(f"{name} = {' '.join(values)}")
PY
} > "$root/etc/pip.conf"
note "root /etc/pip.conf: $(grep -v '^\[' "$root/etc/pip.conf" | paste -sd ';')"

mount_root
cpu_seen=$(as_root grep -m1 '^Model' /proc/cpuinfo | sed 's/.*: //')
note "/proc/cpuinfo in the root: $cpu_seen; QEMU_CPU=$qemu_cpu"

# ---------------------------------------------------------------------------------------------
heading "3. README: sudo apt install -y ${apt_packages[*]}"
note "(python3-picamera2 comes from Raspberry Pi's own archive, not Debian's: left out here)"
if as_root dpkg -s "${apt_packages[@]}" >/dev/null 2>&1; then
    note "already installed in the reused root"
else
    as_root apt-get update -qq > "$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; fail "apt-get update failed"; }
    as_root apt-get install -y -q "${apt_packages[@]}" >> "$work/apt.log" 2>&1 \
        || { tail -30 "$work/apt.log"; fail "apt-get install failed"; }
    note "$(grep -E '^[0-9]+ upgraded, [0-9]+ newly installed' "$work/apt.log" | tail -1)"
fi
as_root dpkg-query -W -f '  ${Package} ${Version}\n' python3 "${apt_packages[@]}"

# ---------------------------------------------------------------------------------------------
heading "4. Model, video and x86-64 reference results on the host"
if [ -z "$model" ]; then
    note "fine-tuning mobilenet_v1 0.25 on flowers-mini (5 epochs) with $host_venv"
    (cd "$repo" && "$host_venv/bin/edgecam" finetune data.path=../shared/datasets/flowers-mini \
        model.backbone=mobilenet_v1 model.alpha=0.25 model.weights=../shared/weights \
        train.epochs=5 output="$work/model" name=pi -q) > "$work/finetune.log" 2>&1 \
        || { tail -30 "$work/finetune.log"; fail "edgecam finetune failed on the host"; }
    sed 's/^/  /' "$work/finetune.log" | grep -E 'accuracy' || true
    model=$(realpath -e "$work/model/pi/last/model.tflite") || fail "finetune made no model.tflite"
fi
note "model: $model ($(stat -c %s "$model") bytes)"

"$host_venv/bin/edgecam" evaluate "$model" "$data" --out "$work/host-eval" -q > "$work/host-eval.log" 2>&1 \
    || { cat "$work/host-eval.log"; fail "edgecam evaluate failed on the host"; }
note "host evaluate: $(grep -m1 '^accuracy' "$work/host-eval.log")"

# ---------------------------------------------------------------------------------------------
heading "5. README: venv with --system-site-packages, pip install ~/edgecam (this working tree, no [train])"
# In the root, as in the README: ~/edgecam (instead of git clone: a copy of the working tree,
# uncommitted edits included), ~/model.tflite, ~/edgecam-venv; our inputs/outputs in ~/edgecam-check.
src=/home/pi/edgecam
check=/home/pi/edgecam-check
venv=/home/pi/edgecam-venv
for d in "$src" "$check" "$venv"; do rm -rf --one-file-system "${root:?}$d"; done
mkdir -p "$root$src" "$root$check/data" "$root$check/out"
# The working tree as git sees it: tracked files (as edited now) plus untracked, not ignored
# ones; no .venv, build/, runs/ or *.egg-info.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done \
    | tar --null -T - -cf -) | tar -xf - -C "$root$src"
note "copied $(find "$root$src" -type f | wc -l) files of the working tree to ~pi/edgecam"
cp -r "$data" "$root$check/data/"
pi_data=$check/data/$(basename "$data")
pi_model=/home/pi/model.tflite
cp "$model" "$root$pi_model"
as_root chown -R pi:pi "$src" "$check" "$pi_model"

note "python3 -m venv --system-site-packages ~/edgecam-venv"
as_pi python3 -m venv --system-site-packages "$venv"
note "~/edgecam-venv/bin/pip install ~/edgecam  (as user pi; aarch64 wheels from PyPI)"
as_pi "$venv/bin/pip" install "$src" > "$work/pip.log" 2>&1 \
    || { tail -40 "$work/pip.log"; fail "pip install of the project failed in the root"; }
grep -E '^Successfully installed' "$work/pip.log" | sed 's/^/  /' || true
note "packages in the venv itself (pip list --local):"
as_pi "$venv/bin/pip" list --local --format=freeze 2>/dev/null | sed 's/^/    /'

# ---------------------------------------------------------------------------------------------
heading "6. Checks inside the venv: apt's numpy kept, no TensorFlow"
numpy_line=$(as_pi "$venv/bin/python" -c 'import numpy; print(numpy.__version__, numpy.__file__)')
note "numpy: $numpy_line"
numpy_version=${numpy_line%% *}
numpy_file=${numpy_line#* }
[ "$numpy_version" = 1.24.2 ] || fail "numpy in the venv is $numpy_version, not apt's 1.24.2"
[[ $numpy_file == /usr/lib/python3/dist-packages/* ]] || fail "numpy comes from $numpy_file, not apt's /usr/lib/python3/dist-packages"
cv2_line=$(as_pi "$venv/bin/python" -c 'import cv2; print(cv2.__version__, cv2.__file__)')
note "cv2:   $cv2_line"
[[ ${cv2_line#* } == /usr/lib/python3/dist-packages/* ]] || fail "cv2 is not apt's python3-opencv: $cv2_line"
pil_line=$(as_pi "$venv/bin/python" -c 'import PIL; print(PIL.__version__, PIL.__file__)')
note "PIL:   $pil_line"
if as_pi "$venv/bin/python" -c 'import tensorflow' > "$work/tf.log" 2>&1; then
    fail "tensorflow is importable in the venv"
fi
note "tensorflow: not importable ($(grep -m1 -o 'ModuleNotFoundError.*' "$work/tf.log" || tail -1 "$work/tf.log"))"
as_pi "$venv/bin/python" -c 'import importlib.metadata as m; print("  ai-edge-litert", m.version("ai-edge-litert"), "| ml_dtypes", m.version("ml_dtypes"), "| edgecam", m.version("edgecam"))'
if as_pi "$venv/bin/pip" check > "$work/pipcheck.log" 2>&1; then
    note "pip check: $(tail -1 "$work/pipcheck.log")"
else
    note "pip check (not fatal: apt's packages' metadata):"; sed 's/^/    /' "$work/pipcheck.log"
fi

# ---------------------------------------------------------------------------------------------
heading "7. edgecam evaluate on the emulated Pi vs the host"
as_pi "$venv/bin/edgecam" --version | sed 's/^/  /'
eval_start=$SECONDS
as_pi "$venv/bin/edgecam" evaluate "$pi_model" "$pi_data" --out "$check/out/evaluate" -q \
    > "$work/pi-eval.log" 2>&1 || { cat "$work/pi-eval.log"; fail "edgecam evaluate failed in the root"; }
note "Pi   evaluate: $(grep -m1 '^accuracy' "$work/pi-eval.log") ($((SECONDS - eval_start)) s emulated)"
note "host evaluate: $(grep -m1 '^accuracy' "$work/host-eval.log")"
eval_line=$(python3 "$here/compare.py" predictions "$work/host-eval/predictions.csv" "$data" \
    "$root$check/out/evaluate/predictions.csv" "$pi_data" --tol "$score_tol") \
    || { echo "$eval_line"; fail "evaluate results differ between the host and the emulated Pi"; }
note "$eval_line"

# ---------------------------------------------------------------------------------------------
heading "8. edgecam run --headless on a video, emulated Pi vs host"
run_summary="SKIP (edgecam run not available)"
if ! as_pi "$venv/bin/edgecam" run --help > "$work/run-help.log" 2>&1; then
    echo "SKIP: edgecam run not available (edgecam run --help failed in the root: $(tail -1 "$work/run-help.log"))"
else
    cp "$here/decode_video.py" "$root$check/decode_video.py"
    if [ -z "$video" ]; then
        # Which container/codec can Debian's python3-opencv (OpenCV 4.6 + FFmpeg 5.1) read back?
        for candidate in "mp4v flowers.mp4" "MJPG flowers.avi"; do
            set -- $candidate
            n=$("$host_venv/bin/python" "$here/make_video.py" "$data" "$work/$2" "$1" 2>"$work/video.log") \
                || { note "host cannot write $1 $2: $(tail -1 "$work/video.log")"; continue; }
            cp "$work/$2" "$root$check/$2"
            as_root chown pi:pi "$check/$2"
            m=$(as_pi "$venv/bin/python" "$check/decode_video.py" "$check/$2" 2>/dev/null || echo 0)
            note "$1 $2: $n frames written on the host, $m read back by the root's OpenCV"
            if [ "$m" = "$n" ]; then video="$work/$2"; break; fi
        done
        [ -n "$video" ] || fail "the root's OpenCV can read neither an mp4v .mp4 nor an MJPG .avi made on the host"
    else
        cp "$video" "$root$check/$(basename "$video")"
    fi
    pi_video=$check/$(basename "$video")
    as_root chown -R pi:pi "$check"
    # The two OpenCV/FFmpeg builds need not decode a lossy video to the same pixels; measure it,
    # since it (not inference: see the evaluate step) is what moves the scores.
    "$host_venv/bin/python" "$here/decode_video.py" "$video" "$work/host-frames.npy" >/dev/null 2>&1 || true
    as_pi "$venv/bin/python" "$check/decode_video.py" "$pi_video" "$check/out/frames.npy" >/dev/null 2>&1 || true
    pixels=$("$host_venv/bin/python" - "$work/host-frames.npy" "$root$check/out/frames.npy" <<'PY' 2>/dev/null
import sys
import numpy as np
a, b = (np.load(p).astype(np.int16) for p in sys.argv[1:3])
if a.shape != b.shape:
    print(f"decoded frames differ in shape (host {a.shape}, Pi {b.shape})")
else:
    d = np.abs(a - b)
    print(f"decoded pixels differ by up to {d.max()} levels ({np.mean(d > 0):.0%} of values)")
PY
) || pixels="decoded pixels not compared"
    note "host vs Pi OpenCV/FFmpeg on the first 100 frames: $pixels"
    "$host_venv/bin/edgecam" run "$model" --source "$video" --headless > "$work/host-run.jsonl" 2> "$work/host-run.err" \
        || { tail -20 "$work/host-run.err"; fail "edgecam run failed on the host"; }
    run_start=$SECONDS
    as_pi "$venv/bin/edgecam" run "$pi_model" --source "$pi_video" --headless > "$work/pi-run.jsonl" 2> "$work/pi-run.err" \
        || { tail -20 "$work/pi-run.err"; fail "edgecam run failed in the root"; }
    note "video $(basename "$video"): Pi run took $((SECONDS - run_start)) s emulated"
    run_line=$(python3 "$here/compare.py" frames "$work/host-run.jsonl" "$work/pi-run.jsonl") \
        || { echo "$run_line"; fail "edgecam run results differ between the host and the emulated Pi"; }
    note "$run_line"
    run_summary="$(sed -E 's/^run: frames=([0-9]+) top_labels_equal=([0-9/]+) max_top_score_diff=([0-9.]+).*/\2 frame top labels equal, max top score diff \3/' <<<"$run_line") (video $(basename "$video"): $pixels)"
fi

# ---------------------------------------------------------------------------------------------
heading "9. Summary"
unmount_root || fail "cannot unmount the root's /proc, /sys, /dev"
disk=$(du -sh --one-file-system "$root" | cut -f1)
note "root disk use: $disk ($root)"
eval_summary=$(sed -E 's/^evaluate: images=([0-9]+) labels_equal=([0-9/]+) max_score_diff=([0-9.]+).*/\2 labels equal, max score diff \3/' <<<"$eval_line")
echo "PASS: emulated Raspberry Pi OS (bookworm arm64, $qemu_cpu): numpy $numpy_version from apt inside the venv," \
     "no tensorflow; evaluate vs x86-64 host: $eval_summary; run: $run_summary; root $disk; took $(elapsed)"
