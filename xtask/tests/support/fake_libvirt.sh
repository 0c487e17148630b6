#!/bin/bash
# A FAKE virt-install and virsh, for tests only: libvirtd cannot usefully run
# on this machine (no systemd as PID 1 to run libvirtd, and no RHEL boot ISO or
# anaconda to install from), so this one script stands in for both programs,
# chosen by the name it is called under (tests link it as `virt-install` and
# `virsh` in a folder put first on PATH).
#
# It follows the documented interfaces of virt-install 4.1 (Debian bookworm's
# virtinst; man virt-install(1), "virt-install --help") and virsh from libvirt
# 9.0 (man virsh(1): domstate, domuuid, domifaddr, start, destroy, undefine,
# console):
#
# - virt-install: options parsed like its argparse (`--opt VALUE` or
#   `--opt=VALUE`); an unknown option exits 2 with argparse's "unrecognized
#   arguments" message; no install method, --extra-args without --location, a
#   missing --os-variant, or a name already in use exit 1 with virt-install's
#   "ERROR    ..." messages. STRICTER than the real one on purpose: --name,
#   --memory and --disk are required (virt-install 4.1 would invent defaults
#   from the OS variant), so a regression in edgelab's command line fails.
#   With --noautoconsole it defines the domain, starts the "install" and
#   returns at once; the domain is `running` and powers itself off (`shut
#   off`, as --noreboot makes it) after $FAKE_LIBVIRT_INSTALL_POLLS (default
#   2) `virsh domstate` polls.
# - virsh [-c|--connect URI] COMMAND: a domain that does not exist gives
#   "error: failed to get domain 'NAME'" and exit 1; start/destroy of a domain
#   in the wrong state give libvirt's "Requested operation is not valid"
#   errors; undefine of a running domain leaves it running but transient
#   (gone after destroy), as libvirt does. `list` and every other command are
#   deliberately unknown here ("error: unknown command"), so edgelab can
#   never find guests by listing them.
#
# - The connection (--connect URI, both programs; libvirt's URI syntax,
#   https://libvirt.org/uri.html): qemu:///system is this host; a remote one,
#   qemu+ssh://[user@]host[:port]/system (or +tls, +tcp, +libssh...), is reached
#   only when its host is listed in $FAKE_LIBVIRT_HOSTS, else libvirt's "failed
#   to connect to the hypervisor" with ssh's resolve error. Each host has its
#   own domains, as separate libvirtds do. A URI of another driver or without
#   /system or /session gives libvirt's connect errors; no --connect is
#   qemu:///system (what root gets).
#
# State lives in $FAKE_LIBVIRT_DIR/domains/NAME/{state,uuid,polls,persistent,disk,argv}
# (a remote host's in $FAKE_LIBVIRT_DIR/hosts/HOST/domains/); every call is
# appended to $FAKE_LIBVIRT_DIR/calls.log as one line, "PROGRAM ARGS...".

set -u
dir=${FAKE_LIBVIRT_DIR:?FAKE_LIBVIRT_DIR must be set}
mkdir -p "$dir/domains"
program=$(basename "$0")
echo "$program $*" >>"$dir/calls.log"

err() { echo "ERROR    $*" >&2; exit 1; }

# Sets $domains to the folder of the connection's domains, or fails as
# libvirt's connect does.
connect_to() {
    local uri=${1:-qemu:///system}
    local connect_err="error: failed to connect to the hypervisor"
    case $uri in
        qemu:///system|qemu:///session) domains="$dir/domains"; [ "$uri" = qemu:///session ] && domains="$dir/session/domains" ;;
        qemu+ssh://*|qemu+libssh://*|qemu+libssh2://*|qemu+tls://*|qemu+tcp://*)
            local rest=${uri#*://} authority path host
            authority=${rest%%/*}; path=${rest#*/}; path=${path%%\?*}
            host=${authority#*@}; host=${host%%:*}
            if [ -z "$host" ] || [ "$authority" = "$rest" ] || { [ "$path" != system ] && [ "$path" != session ]; }; then
                printf '%s\nerror: invalid argument: could not parse URI %s\n' "$connect_err" "$uri" >&2; exit 1
            fi
            case " ${FAKE_LIBVIRT_HOSTS:-} " in
                *" $host "*) domains="$dir/hosts/$host/domains" ;;
                *) printf '%s\nerror: Cannot recv data: ssh: Could not resolve hostname %s: Name or service not known: Connection reset by peer\n' "$connect_err" "$host" >&2; exit 1 ;;
            esac ;;
        qemu://*) printf '%s\nerror: invalid argument: could not parse URI %s\n' "$connect_err" "$uri" >&2; exit 1 ;;
        *) printf '%s\nerror: no connection driver available for %s\n' "$connect_err" "$uri" >&2; exit 1 ;;
    esac
    mkdir -p "$domains"
}

virt_install() {
    local connect="" name="" memory="" vcpus="" disk="" os_variant="" network="" cdrom="" location="" extra_args=""
    local import=0 noautoconsole=0 noreboot=0 unknown=()
    while [ $# -gt 0 ]; do
        local opt=$1 value="" has_inline=0
        case $opt in --*=*) value=${opt#*=}; opt=${opt%%=*}; has_inline=1 ;; esac
        case $opt in
            --connect|--name|-n|--memory|--vcpus|--disk|--os-variant|--osinfo|--network|-w|--cdrom|-c|--location|-l|--extra-args|-x|--graphics|--boot|--metadata|--console|--serial|--wait|--cpu|--arch|--virt-type|--controller|--video|--channel|--rng|--tpm)
                if [ $has_inline = 0 ]; then
                    if [ $# -lt 2 ]; then
                        echo "usage: virt-install --name NAME --memory MB STORAGE INSTALL [options]" >&2
                        echo "virt-install: error: argument $opt: expected one argument" >&2
                        exit 2
                    fi
                    value=$2; shift
                fi
                case $opt in
                    --connect) connect=$value ;;
                    --name|-n) name=$value ;;
                    --memory) memory=$value ;;
                    --vcpus) vcpus=$value ;;
                    --disk) disk=$value ;;
                    --os-variant|--osinfo) os_variant=$value ;;
                    --network|-w) network=$value ;;
                    --cdrom|-c) cdrom=$value ;;
                    --location|-l) location=$value ;;
                    --extra-args|-x) extra_args=$value ;;
                esac ;;
            --noautoconsole) noautoconsole=1 ;;
            --noreboot) noreboot=1 ;;
            --import) import=1 ;;
            --pxe|--dry-run|--transient|--quiet|-q|--debug|-d|--autostart|--nographics) ;;
            *) unknown+=("$1") ;;
        esac
        shift
    done
    if [ ${#unknown[@]} -gt 0 ]; then
        echo "usage: virt-install --name NAME --memory MB STORAGE INSTALL [options]" >&2
        echo "virt-install: error: unrecognized arguments: ${unknown[*]}" >&2
        exit 2
    fi
    [ -n "$name" ] || err "--name is required"
    [ -n "$memory" ] || err "--memory amount in MiB is required"
    [ -n "$disk" ] || err "--disk storage must be specified (override with --disk none)"
    if [ -z "$cdrom$location" ] && [ $import = 0 ]; then
        err "An install method must be specified
(--location URL, --cdrom CD/ISO, --pxe, --import, --boot hd|cdrom|...)"
    fi
    if [ -n "$extra_args" ] && [ -z "$location" ]; then
        err "Kernel arguments are only supported with location or kernel installs."
    fi
    [ -n "$os_variant" ] || err "--os-variant/--osinfo OS name is required, but no value was set or detected."
    if [ -n "$cdrom" ] && [ ! -e "$cdrom" ]; then
        err "Validating install media '$cdrom' failed: Must specify storage creation parameters for non-existent path '$cdrom'."
    fi
    connect_to "$connect"
    [ -e "$domains/$name" ] && err "Guest name '$name' is already in use."
    local d="$domains/$name"
    mkdir -p "$d"
    cat /proc/sys/kernel/random/uuid >"$d/uuid"
    echo "running" >"$d/state"
    echo "${FAKE_LIBVIRT_INSTALL_POLLS:-2}" >"$d/polls"
    echo 1 >"$d/persistent"
    echo "/var/lib/libvirt/images/$name.qcow2" >"$d/disk"
    echo
    echo "Starting install..."
    echo "Creating domain...                                          |    0 B  00:00:00"
    if [ $noautoconsole = 1 ]; then
        echo "Domain is still running. Installation may be in progress."
        echo "You can reconnect to the console to complete the installation process."
    else
        # Without --noautoconsole the real one attaches a console and waits.
        echo "0" >"$d/polls"; echo "shut off" >"$d/state"
        [ $noreboot = 1 ] || echo "running" >"$d/state"
        echo "Domain creation completed."
    fi
    exit 0
}

domain_dir() {
    local d="$domains/$1"
    if [ ! -e "$d" ]; then
        echo "error: failed to get domain '$1'" >&2
        exit 1
    fi
    echo "$d"
}

virsh() {
    local connect=""
    while [ $# -gt 0 ]; do
        case $1 in
            -c|--connect) connect=${2:-}; shift 2 ;;
            --connect=*) connect=${1#*=}; shift ;;
            -q|--quiet) shift ;;
            -*) echo "error: unsupported option '$1'. See --help." >&2; exit 1 ;;
            *) break ;;
        esac
    done
    connect_to "$connect"
    local command=${1:-}
    [ $# -gt 0 ] && shift
    local name="" remove_storage=0
    for arg in "$@"; do
        case $arg in
            --remove-all-storage) [ "$command" = undefine ] || { echo "error: command '$command' doesn't support option $arg" >&2; exit 1; }; remove_storage=1 ;;
            --*) echo "error: command '$command' doesn't support option $arg" >&2; exit 1 ;;
            *) [ -z "$name" ] && name=$arg || { echo "error: unexpected data '$arg'" >&2; exit 1; } ;;
        esac
    done
    case $command in
        domstate|domuuid|domifaddr|start|destroy|undefine|console)
            [ -n "$name" ] || { echo "error: command '$command' requires <domain> option" >&2; exit 1; } ;;
        *) echo "error: unknown command: '$command'" >&2; exit 1 ;;
    esac
    local d
    d=$(domain_dir "$name") || exit 1
    local state
    state=$(cat "$d/state")
    case $command in
        domstate)
            local polls
            polls=$(cat "$d/polls")
            if [ "$state" = running ] && [ "$polls" -gt 0 ]; then
                polls=$((polls - 1))
                echo "$polls" >"$d/polls"
                if [ "$polls" = 0 ]; then state="shut off"; echo "$state" >"$d/state"; fi
            fi
            echo "$state"; echo ;;
        domuuid) cat "$d/uuid"; echo ;;
        domifaddr)
            # libvirt's table; a row only while running with a lease (the
            # test writes the lease's address to $d/address).
            echo " Name       MAC address          Protocol     Address"
            echo "-------------------------------------------------------------------------------"
            if [ "$state" = running ] && [ -s "$d/address" ]; then
                printf ' %-10s %-20s %-12s %s/24\n' vnet0 "52:54:00:6b:3c:58" ipv4 "$(cat "$d/address")"
            fi
            echo ;;
        start)
            if [ "$state" = running ]; then
                echo "error: Failed to start domain '$name'" >&2
                echo "error: Requested operation is not valid: domain is already active" >&2
                exit 1
            fi
            echo running >"$d/state"; echo "Domain '$name' started"; echo ;;
        destroy)
            if [ "$state" != running ]; then
                echo "error: Failed to destroy domain '$name'" >&2
                echo "error: Requested operation is not valid: domain is not running" >&2
                exit 1
            fi
            if [ "$(cat "$d/persistent")" = 0 ]; then rm -rf "$d"; else echo "shut off" >"$d/state"; echo 0 >"$d/polls"; fi
            echo "Domain '$name' destroyed"; echo ;;
        undefine)
            if [ "$state" = running ]; then echo 0 >"$d/persistent"; else rm -rf "$d"; fi
            echo "Domain '$name' has been undefined"
            [ $remove_storage = 1 ] && echo "Volume 'vda'($(cat "$d/disk" 2>/dev/null || echo "/var/lib/libvirt/images/$name.qcow2")) removed."
            echo ;;
        console)
            if [ "$state" != running ]; then echo "error: The domain is not running" >&2; exit 1; fi
            echo "Connected to domain '$name'"
            echo "Escape character is ^] (Ctrl + ])" ;;
    esac
    exit 0
}

case $program in
    virt-install) virt_install "$@" ;;
    virsh) virsh "$@" ;;
    *) echo "fake_libvirt.sh: called as unknown program $program" >&2; exit 127 ;;
esac
