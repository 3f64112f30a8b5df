//! The bpf(2) commands aya 0.13 does not offer for cgroup programs: creating a bpf_link
//! whose fd we own (aya keeps cgroup link fds private) and pinning it, so the programs
//! stay attached across an agent restart, and re-opening such a link to swap in the
//! programs of a newer drover.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// Attach types from `<linux/bpf.h>` (enum bpf_attach_type).
pub(crate) const CGROUP_INET4_CONNECT: u32 = 10;
pub(crate) const CGROUP_UDP4_SENDMSG: u32 = 14;
pub(crate) const CGROUP_UDP4_RECVMSG: u32 = 19;
pub(crate) const CGROUP_INET4_GETPEERNAME: u32 = 29;
pub(crate) const CGROUP_INET6_CONNECT: u32 = 11;
pub(crate) const CGROUP_UDP6_SENDMSG: u32 = 15;
pub(crate) const CGROUP_UDP6_RECVMSG: u32 = 20;
pub(crate) const CGROUP_INET6_GETPEERNAME: u32 = 30;

/// `union bpf_attr`, as zeroed 128 bytes; the kernel reads only the fields of the
/// command and requires the rest to be zero.
#[repr(C, align(8))]
struct Attr([u32; 32]);

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
    let mut attr = Attr([0; 32]);
    attr.0[0] = prog.as_raw_fd() as u32;
    attr.0[1] = cgroup.as_raw_fd() as u32;
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
