#!/bin/sh
set -eu
: "${AUTHORIZED_KEYS:?set AUTHORIZED_KEYS to the public key(s) allowed to log in as backup}"
printf '%s\n' "$AUTHORIZED_KEYS" > /home/backup/.ssh/authorized_keys
chown backup:backup /home/backup/.ssh/authorized_keys
chmod 600 /home/backup/.ssh/authorized_keys
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
exec /usr/sbin/sshd -D -e
