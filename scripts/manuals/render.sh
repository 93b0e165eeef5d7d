#!/usr/bin/env bash
# Render installed manual pages to plain text, the way a user saves a page:
#   MANWIDTH=80 man -E UTF-8 -P cat SECTION NAME > NAME.SECTION.txt
#
#   render.sh fixtures        the fixed page list -> tests/fixtures/manuals/
#   render.sh all DIR [N]     up to N (default 1000) pages of sections 1, 5, 8
#                             from /usr/share/man, spread over the alphabet (one
#                             product's thousands of gcloud pages left out), plus
#                             the fixture pages -> DIR
#
# Tabs and indentation are kept as man prints them (no col, no expand). If a
# page comes out with backspace overstrike (bold/underline), it is piped
# through `col -b` and nothing else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FIXTURE_DIR="$ROOT/tests/fixtures/manuals"
MAN_DIR=/usr/share/man
MIN_BYTES=2048

# English pages, the same whatever the caller's locale is.
export LC_ALL=C.UTF-8
unset LANGUAGE MAN_KEEP_FORMATTING MANOPT MANPATH MANROFFOPT 2>/dev/null || true
export MANWIDTH=80

# SECTION NAME pairs.
FIXTURES=(
    "1 dd"
    "1 gzip"
    "1 journalctl"
    "1 logger"
    "1 sqlite3"
    "1 tar"
    "1 wget"
    "1 xargs"
    "1 xz"
    "1 zstd"
    "5 apt.conf"
    "5 journald.conf"
    "5 login.defs"
    "5 logind.conf"
    "5 ssh_config"
    "5 timesyncd.conf"
    "8 fstrim"
    "8 start-stop-daemon"
)

die() { echo "render.sh: $*" >&2; exit 1; }

usage() {
    echo "usage: $0 fixtures | all DIR [N]" >&2
    exit 2
}

# render SECTION NAME OUTFILE: returns non-zero if man fails or prints nothing.
# troff warnings go to OUTFILE.log, removed when empty.
render() {
    local section=$1 name=$2 out=$3 tmp
    tmp="$out.tmp"
    if ! man -E UTF-8 -P cat "$section" "$name" >"$tmp" 2>"$out.log"; then
        rm -f "$tmp"
        return 1
    fi
    if [ ! -s "$tmp" ]; then
        rm -f "$tmp"
        return 1
    fi
    if LC_ALL=C grep -q $'\b' "$tmp"; then
        col -b <"$tmp" >"$tmp.col"
        mv "$tmp.col" "$tmp"
    fi
    if LC_ALL=C grep -q $'\b' "$tmp"; then
        rm -f "$tmp"
        echo "render.sh: backspaces left in $section $name after col -b" >&2
        return 1
    fi
    mv "$tmp" "$out"
    [ -s "$out.log" ] || rm -f "$out.log"
    return 0
}

render_fixtures() {
    local dir=$1 entry section name path out
    mkdir -p "$dir"
    for entry in "${FIXTURES[@]}"; do
        read -r section name <<<"$entry"
        if ! path=$(man -w "$section" "$name" 2>/dev/null); then
            die "manual page $name($section) is not installed (man -w $section $name failed)"
        fi
        out="$dir/$name.$section.txt"
        render "$section" "$name" "$out" || die "could not render $name($section) from $path"
        if [ -f "$out.log" ]; then
            sed "s|^|$name($section): |" "$out.log" >&2
            rm -f "$out.log"
        fi
        printf '%-28s %7d bytes\n' "$name.$section.txt" "$(wc -c <"$out")"
    done
}

render_all() {
    local dir=$1 limit=$2 done_n=0 skipped=0 f base section name out sum
    mkdir -p "$dir"
    render_fixtures "$dir" >/dev/null
    declare -A seen=() fixture=()
    for f in "$dir"/*.txt; do
        seen[$(sha256sum <"$f" | cut -d' ' -f1)]=1
    done
    local entry s n
    for entry in "${FIXTURES[@]}"; do
        read -r s n <<<"$entry"
        fixture["$n.$s"]=1
    done
    # Regular files only: symlinks are other names for pages already listed.
    while IFS= read -r f; do
        [ "$done_n" -lt "$limit" ] || break
        base=${f##*/}
        base=${base%.gz}; base=${base%.bz2}; base=${base%.xz}
        section=${base##*.}
        name=${base%.*}
        [ -n "$name" ] && [ "$name" != "$base" ] || continue
        [ -z "${fixture[$name.$section]+x}" ] || continue
        out="$dir/$name.$section.txt"
        if ! render "$section" "$name" "$out" 2>/dev/null; then
            rm -f "$out" "$out.log"
            skipped=$((skipped + 1))
            continue
        fi
        rm -f "$out.log"
        if [ "$(wc -c <"$out")" -lt "$MIN_BYTES" ]; then
            rm -f "$out"
            skipped=$((skipped + 1))
            continue
        fi
        # A page that only sources another one (.so) renders the same text.
        sum=$(sha256sum <"$out" | cut -d' ' -f1)
        if [ -n "${seen[$sum]+x}" ]; then
            rm -f "$out"
            skipped=$((skipped + 1))
            continue
        fi
        seen[$sum]=1
        done_n=$((done_n + 1))
    done < <(find "$MAN_DIR/man1" "$MAN_DIR/man5" "$MAN_DIR/man8" -maxdepth 1 -type f \
                 \( -name '*.[158]*' \) -printf '%f\t%p\n' | LC_ALL=C sort | cut -f2 \
                 | grep -v '/gcloud' | awk -v n="$limit" '{ all[NR] = $0 }
                     END { step = NR / (n * 1.5); if (step < 1) step = 1;
                           for (i = 1; i <= NR; i += step) print all[int(i)] }')
    echo "rendered $done_n pages (+${#FIXTURES[@]} fixture pages) into $dir; skipped $skipped" >&2
}

[ $# -ge 1 ] || usage
case $1 in
    fixtures)
        [ $# -eq 1 ] || usage
        render_fixtures "$FIXTURE_DIR"
        ;;
    all)
        [ $# -ge 2 ] && [ $# -le 3 ] || usage
        limit=${3:-1000}
        [[ $limit =~ ^[0-9]+$ ]] || die "N must be a number, got '$limit'"
        render_all "$2" "$limit"
        ;;
    *)
        usage
        ;;
esac
