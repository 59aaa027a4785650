/**
 * Seccomp for containers: the runtime default profile (an allowlist with
 * EPERM for everything else, the same calls Docker's and containerd's default
 * profiles allow), "unconfined", or a profile file on this host. Syscall
 * names libseccomp does not know are skipped by runc, so the list may name
 * calls newer than the host's kernel.
 */
import { readFile } from 'node:fs/promises';
import { BerthError, errorMessage } from '../../errors.js';
import { SecurityProfile_ProfileType, type SecurityProfile } from '../../../generated/api.js';
import type { OciSeccomp, OciSyscallRule } from './types.js';

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== '');
}

/** Calls every container may make, with any arguments. */
const ALWAYS_ALLOWED = words(`
  accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
  clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
  clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat
  dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
  epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group
  faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2
  fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
  fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
  futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
  getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
  getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
  getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
  getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr getxattrat
  inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
  io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
  io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
  lchown lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
  lremovexattr lseek lsetxattr lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat lstat64
  madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
  mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
  mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal
  msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
  name_to_handle_at nanosleep newfstatat _newselect open openat openat2
  pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
  ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
  pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
  recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename renameat renameat2
  restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
  rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
  sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
  sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
  sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
  semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto
  setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
  setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
  setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
  setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
  sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
  symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
  timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
  timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill
  truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
  utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
  ptrace process_vm_readv process_vm_writev
`);
// The last line (ptrace, process_vm_*) is safe from kernel 4.8 on, which every kernel Node 24 runs on is.

interface ArchProfile {
  /** libseccomp names of the ABIs a process of this machine can use. */
  architectures: string[];
  extra: string[];
}

/** Keyed by Node's process.arch. */
const ARCHES: Record<string, ArchProfile> = {
  x64: { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], extra: ['arch_prctl', 'modify_ldt'] },
  arm64: {
    architectures: ['SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64'],
    extra: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
  },
};

/** Calls a capability in the bounding set also unlocks. */
const BY_CAPABILITY: Record<string, string[]> = {
  CAP_DAC_READ_SEARCH: ['open_by_handle_at'],
  CAP_SYS_ADMIN: words(`bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
    mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname
    setns syslog umount umount2 unshare`),
  CAP_SYS_BOOT: ['reboot'],
  CAP_SYS_CHROOT: ['chroot'],
  CAP_SYS_MODULE: ['delete_module', 'init_module', 'finit_module'],
  CAP_SYS_PACCT: ['acct'],
  CAP_SYS_PTRACE: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'],
  CAP_SYS_RAWIO: ['iopl', 'ioperm'],
  CAP_SYS_TIME: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
  CAP_SYS_TTY_CONFIG: ['vhangup'],
  CAP_SYS_NICE: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'],
  CAP_SYSLOG: ['syslog'],
  CAP_BPF: ['bpf'],
  CAP_PERFMON: ['perf_event_open'],
};

const AF_ALG = 38;
const AF_VSOCK = 40;
/** CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP: clone may not make namespaces without CAP_SYS_ADMIN. */
const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000;
const ENOSYS = 38;
/** personality(2) values that only pick an execution domain; others (e.g. ADDR_NO_RANDOMIZE) are refused. */
const PERSONALITIES = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff];

/**
 * The runtime default profile for a process with bounding set `bounding`.
 * `arch` is Node's process.arch (tests pass it to see other machines).
 */
export function defaultSeccompProfile(bounding: readonly string[], arch: string = process.arch): OciSeccomp {
  const machine = ARCHES[arch];
  const rules: OciSyscallRule[] = [{ names: [...ALWAYS_ALLOWED, ...(machine?.extra ?? [])], action: 'SCMP_ACT_ALLOW' }];
  // socket(2) for every family but AF_ALG and AF_VSOCK, as three single-condition rules (libseccomp ORs rules).
  rules.push(
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_ALG, op: 'SCMP_CMP_LT' }] },
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_ALG + 1, op: 'SCMP_CMP_EQ' }] },
    { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_GT' }] },
  );
  for (const value of PERSONALITIES) {
    rules.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] });
  }
  for (const cap of bounding) {
    const names = BY_CAPABILITY[cap];
    if (names !== undefined) rules.push({ names: [...names], action: 'SCMP_ACT_ALLOW' });
  }
  if (!bounding.includes('CAP_SYS_ADMIN')) {
    rules.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
    // ENOSYS, not EPERM: libc then falls back to clone(2), which the rule above filters.
    rules.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  return { defaultAction: 'SCMP_ACT_ERRNO', architectures: [...(machine?.architectures ?? [])], syscalls: rules };
}

function invalid(message: string, context: Record<string, string>): BerthError {
  return new BerthError('invalid-argument', 'ERR_SPEC_SECCOMP_PROFILE', message, { context });
}

/** The deprecated seccomp_profile_path form ("runtime/default", "unconfined", "localhost/<path>"); '' is "not set". */
export function seccompProfileFromPath(profilePath: string): SecurityProfile | undefined {
  switch (profilePath) {
    case '':
      return undefined;
    case 'runtime/default':
    case 'docker/default':
      return { profileType: SecurityProfile_ProfileType.RuntimeDefault, localhostRef: '' };
    case 'unconfined':
      return { profileType: SecurityProfile_ProfileType.Unconfined, localhostRef: '' };
    default:
      if (!profilePath.startsWith('localhost/')) throw invalid(`invalid seccomp profile ${JSON.stringify(profilePath)}`, { profile: profilePath });
      return { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: profilePath.slice('localhost/'.length) };
  }
}

/** Reads a Localhost profile: an OCI LinuxSeccomp object in JSON. */
export async function loadSeccompProfile(file: string): Promise<OciSeccomp> {
  if (!file.startsWith('/')) throw invalid(`seccomp profile path ${JSON.stringify(file)} is not absolute`, { profile: file });
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw invalid(`cannot read seccomp profile ${file}: ${errorMessage(err)}`, { profile: file });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(`seccomp profile ${file} is not JSON: ${errorMessage(err)}`, { profile: file });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof (doc as Record<string, unknown>)['defaultAction'] !== 'string') {
    throw invalid(`seccomp profile ${file} has no defaultAction`, { profile: file });
  }
  const syscalls = (doc as Record<string, unknown>)['syscalls'];
  if (syscalls !== undefined && syscalls !== null && !Array.isArray(syscalls)) {
    throw invalid(`seccomp profile ${file}: syscalls must be a list`, { profile: file });
  }
  return doc as OciSeccomp;
}

/**
 * The seccomp section of a spec: none for privileged containers, for
 * Unconfined and when nothing is asked for (the kubelet always says which);
 * the default profile for RuntimeDefault; the file's for Localhost.
 */
export async function chooseSeccomp(
  profile: SecurityProfile | undefined,
  deprecatedPath: string,
  privileged: boolean,
  bounding: readonly string[],
): Promise<OciSeccomp | undefined> {
  if (privileged) return undefined;
  const sp = profile ?? seccompProfileFromPath(deprecatedPath);
  if (sp === undefined) return undefined;
  if (sp.profileType !== SecurityProfile_ProfileType.Localhost && sp.localhostRef !== '') {
    throw invalid('seccomp localhost_ref may only be set with profile type Localhost', { profile: sp.localhostRef });
  }
  switch (sp.profileType) {
    case SecurityProfile_ProfileType.Unconfined:
      return undefined;
    case SecurityProfile_ProfileType.RuntimeDefault:
      return defaultSeccompProfile(bounding);
    case SecurityProfile_ProfileType.Localhost:
      return loadSeccompProfile(sp.localhostRef.startsWith('localhost/') ? sp.localhostRef.slice('localhost/'.length) : sp.localhostRef);
    default:
      throw invalid(`unknown seccomp profile type ${sp.profileType}`, {});
  }
}
