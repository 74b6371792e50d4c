#!/bin/sh
# Create or update the report web server's credentials (deploy/nginx/reports.conf).
#
#   deploy/make-htpasswd.sh quality <user>             quality team: registry-wide pages
#   deploy/make-htpasswd.sh site <site_id> <user>      a site lead: /…/sites/<site_id>/ only
#   deploy/make-htpasswd.sh remove <user>              drop a user everywhere
#
# The password is read from HTPASSWD_PASSWORD, or generated and printed once. Files go to
# REPORTS_AUTH_DIR (default deploy/auth, git-ignored; mounted read-only into the `reports`
# service): quality.htpasswd, sites/<site_id>.htpasswd, and all.htpasswd (every user, for
# the shared assets). Hashes are apr1 (openssl passwd -apr1), which nginx verifies itself.
# Re-running for an existing user replaces that user's password. nginx reads the files on
# each request: no restart needed.
set -eu

AUTH_DIR=${REPORTS_AUTH_DIR:-deploy/auth}
SITE_ID_PATTERN='^[a-z0-9_]{2,32}$'
USER_PATTERN='^[A-Za-z0-9._@-]{1,64}$'

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check() {  # value pattern what
    printf '%s' "$1" | grep -Eq "$2" || { echo "error: invalid $3: '$1'" >&2; exit 2; }
}

drop_user() {  # file user
    [ -f "$1" ] || return 0
    grep -v "^$2:" "$1" > "$1.tmp" || true
    mv "$1.tmp" "$1"
}

set_user() {  # file user
    mkdir -p "$(dirname "$1")"
    drop_user "$1" "$2"
    printf '%s:%s\n' "$2" "$HASH" >> "$1"
    chmod 644 "$1"
}

rebuild_all() {
    cat "$AUTH_DIR"/quality.htpasswd "$AUTH_DIR"/sites/*.htpasswd 2>/dev/null | sort -u > "$AUTH_DIR/all.htpasswd"
    chmod 644 "$AUTH_DIR/all.htpasswd"
}

new_hash() {
    if [ -z "${HTPASSWD_PASSWORD:-}" ]; then
        HTPASSWD_PASSWORD=$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)
        echo "password for $1: $HTPASSWD_PASSWORD   (shown once; hand it over securely)"
    fi
    HASH=$(printf '%s' "$HTPASSWD_PASSWORD" | openssl passwd -apr1 -stdin)
}

[ $# -ge 1 ] || usage
command -v openssl >/dev/null || { echo "error: openssl is required" >&2; exit 1; }
mkdir -p "$AUTH_DIR/sites"
touch "$AUTH_DIR/quality.htpasswd"

case "$1" in
    quality)
        [ $# -eq 2 ] || usage
        check "$2" "$USER_PATTERN" "user name"
        new_hash "$2"
        set_user "$AUTH_DIR/quality.htpasswd" "$2"
        ;;
    site)
        [ $# -eq 3 ] || usage
        check "$2" "$SITE_ID_PATTERN" "site_id"
        check "$3" "$USER_PATTERN" "user name"
        new_hash "$3"
        set_user "$AUTH_DIR/sites/$2.htpasswd" "$3"
        ;;
    remove)
        [ $# -eq 2 ] || usage
        check "$2" "$USER_PATTERN" "user name"
        for f in "$AUTH_DIR"/quality.htpasswd "$AUTH_DIR"/sites/*.htpasswd; do
            drop_user "$f" "$2"
        done
        ;;
    *)
        usage
        ;;
esac
rebuild_all
