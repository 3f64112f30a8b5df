//! The bpf(2) commands aya 0.13 does not offer for cgroup programs: creating a bpf_link
//! whose fd we own (aya keeps cgroup link fds private) and pinning it, so the programs
//! stay attached across an agent restart, and re-opening such a link to swap in the
//! programs of a newer drover. The same for the tcx links of the NodePort programs, plus
//! the two lookups they need (an interface's index, the network namespace cookie).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Attach types from `<linux/bpf.h>` (enum bpf_attach_type).
pub(crate) const CGROUP_INET4_CONNECT: u32 = 10;
pub(crate) const CGROUP_UDP4_SENDMSG: u32 = 14;
pub(crate) const CGROUP_UDP4_RECVMSG: u32 = 19;
pub(crate) const CGROUP_INET4_GETPEERNAME: u32 = 29;
pub(crate) const CGROUP_INET6_CONNECT: u32 = 11;
pub(crate) const CGROUP_UDP6_SENDMSG: u32 = 15;
pub(crate) const CGROUP_UDP6_RECVMSG: u32 = 20;
pub(crate) const CGROUP_INET6_GETPEERNAME: u32 = 30;
pub(crate) const TCX_INGRESS: u32 = 46;
pub(crate) const TCX_EGRESS: u32 = 47;

/// `SO_NETNS_COOKIE` (Linux 5.14) from `<asm-generic/socket.h>`.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// `union bpf_attr`, as zeroed 128 bytes; the kernel reads only the fields of the
/// command and requires the rest to be zero.
#[repr(C, align(8))]
struct Attr([u32; 32]);

/// Runs `prog` once on `packet` (BPF_PROG_TEST_RUN): returns the program's return
/// value and the packet as it left the program.
pub(crate) fn prog_test_run(prog: BorrowedFd<'_>, packet: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut attr = Attr([0; 32]);
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[2] = packet.len() as u32;
    attr.0[3] = out.len() as u32;
    let data_in = packet.as_ptr() as u64;
    let data_out = out.as_mut_ptr() as u64;
    attr.0[4] = data_in as u32;
    attr.0[5] = (data_in >> 32) as u32;
    attr.0[6] = data_out as u32;
    attr.0[7] = (data_out >> 32) as u32;
    attr.0[8] = 1;
    // SAFETY: as in bpf(); in addition the kernel writes retval, data_size_out and
    // duration into attr (which is mutable and lives across the call) and at most
    // data_size_out bytes into `out`, which holds that many.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate((attr.0[3] as usize).min(out.len()));
    Ok((attr.0[1], out))
}

fn bpf(cmd: libc::c_long, attr: &Attr) -> io::Result<i64> {
    // SAFETY: attr points at 128 initialised bytes that live across the call; the kernel
    // reads at most that many (the size is passed) and writes nothing back for these
    // commands.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Attaches `prog` to `cgroup` with a new bpf_link and returns the link's fd.
pub(crate) fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    link_create_target(prog, cgroup.as_raw_fd() as u32, attach_type)
}

/// Attaches `prog` to the interface `ifindex` with a new tcx link (appended after the
/// programs already there) and returns the link's fd.
pub(crate) fn link_create_tcx(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    link_create_target(prog, ifindex, attach_type)
}

/// BPF_LINK_CREATE: `target` is a cgroup fd or an interface index (the same field).
fn link_create_target(prog: BorrowedFd<'_>, target: u32, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[1] = target;
    attr.0[2] = attach_type;
    let fd = bpf(BPF_LINK_CREATE, &attr)?;
    // SAFETY: on success BPF_LINK_CREATE returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Swaps the program behind `link` for `prog` atomically: no moment without one.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = link.as_raw_fd() as u32;
    attr.0[1] = prog.as_raw_fd() as u32;
    bpf(BPF_LINK_UPDATE, &attr).map(|_| ())
}

/// Detaches `link` now. Removing a link's last pin detaches it too, but only once the
/// bpffs inode is freed after an RCU grace period; this makes the detach synchronous.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = Attr([0; 32]);
    attr.0[0] = link.as_raw_fd() as u32;
    bpf(BPF_LINK_DETACH, &attr).map(|_| ())
}

/// Opens the BPF object pinned at `path` (here: a link).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = Attr([0; 32]);
    set_ptr(&mut attr, c.as_ptr() as u64);
    let fd = bpf(BPF_OBJ_GET, &attr)?;
    // SAFETY: on success BPF_OBJ_GET returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Puts a pointer in the first (u64) field of `attr`: low word first on the
/// little-endian hosts drover supports (x86_64; the build uses x86_64 headers too).
fn set_ptr(attr: &mut Attr, ptr: u64) {
    attr.0[0] = ptr as u32;
    attr.0[1] = (ptr >> 32) as u32;
}

/// Pins the BPF object behind `fd` (here: a link) at `path` on a bpffs.
pub(crate) fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = Attr([0; 32]);
    set_ptr(&mut attr, c.as_ptr() as u64);
    attr.0[2] = fd.as_raw_fd() as u32;
    bpf(BPF_OBJ_PIN, &attr).map(|_| ())
}

/// The index of the interface `name` in the caller's network namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c is a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// The cookie of the caller's network namespace (what `bpf_get_netns_cookie` returns
/// for its sockets), read through a throwaway socket.
pub(crate) fn netns_cookie() -> io::Result<u64> {
    // SAFETY: socket(2) with constant arguments; on success the fd is new and owned here.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes passed.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(cookie)
    }
}
