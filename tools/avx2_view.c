/* avx2_view: run a program as it would run on an AVX2-only x86 CPU, on a CPU that has AVX-512, VNNI or AMX.
 *
 * Loaded with LD_PRELOAD (tools/avx2-view builds and loads it). Libraries choose their kernels by the CPUID
 * instruction (ONNX Runtime's MLAS, PyTorch's cpuinfo, oneDNN, numpy); Linux can make CPUID fault instead of
 * answering (arch_prctl ARCH_SET_CPUID, the "cpuid_fault" flag in /proc/cpuinfo, also inside KVM guests; threads
 * and forked children inherit it, exec resets it and LD_PRELOAD sets it again). This library turns that on,
 * answers each faulting CPUID itself with the real answer less every AVX-512, VNNI (AVX-512 and VEX), bf16, fp16,
 * AMX and AVX10 bit, and steps over the instruction. So every kernel picked by CPUID after start-up is the one an
 * AVX2 + FMA machine would pick (MLAS, for one, needs a CPUID bit for each of its AVX-512/VNNI/AMX kernels). It
 * also sets TEXTCLASS_CPU=avx2, so that textclass, which reads /proc/cpuinfo, chooses as such a machine would.
 *
 * What it cannot hide: the CPU's speed at AVX2 code (a Zen 4 core is not a Zen 2/3 core); XGETBV, which still
 * reports the AVX-512 and AMX register state enabled (code that checks CPUID first, as MLAS does, never asks);
 * choices made before this library's constructor runs (glibc's own string routines and <sys/platform/x86.h>,
 * glibc-hwcaps library folders, IFUNCs resolved at start-up); and /proc/cpuinfo.
 *
 * CPUID's fault arrives as SIGSEGV. So SIGSEGV is never really blocked (sigprocmask and pthread_sigmask leave it
 * out: a CPUID with it blocked would kill the process), and handlers the program installs for SIGSEGV through
 * sigaction, signal, bsd_signal or sysv_signal (Python's faulthandler, pytest) are kept aside and called for
 * every other SIGSEGV, so crashes still reach them. Not covered: raw rt_sigaction/rt_sigprocmask system calls, a
 * program handler's sa_mask, and seccomp sandboxes that refuse arch_prctl (the process then stops with a message).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef int (*mask_fn)(int, const sigset_t *, sigset_t *);

static sigaction_fn real_sigaction;
static mask_fn real_sigprocmask, real_pthread_sigmask;
static struct sigaction program_handler; /* what the program asked for SIGSEGV: SIG_DFL until it asks */
static volatile unsigned long answered;   /* CPUIDs answered, for AVX2_VIEW_REPORT */

static void say(const char *text) {
    ssize_t ignored = write(2, text, strlen(text));
    (void)ignored;
}

static void resolve(void) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (!real_sigprocmask) real_sigprocmask = (mask_fn)dlsym(RTLD_NEXT, "sigprocmask");
    if (!real_pthread_sigmask) real_pthread_sigmask = (mask_fn)dlsym(RTLD_NEXT, "pthread_sigmask");
}

static int cpuid_faults(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

#define BIT(n) (1u << (n))

/* Clear what an AVX2 + FMA CPU does not have. Registers: r[0..3] = EAX, EBX, ECX, EDX. */
static void hide(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX_BF16, AVX512_FP16, AMX_TILE, AMX_INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX_VNNI, AVX512_BF16, AMX_FP16, AVX_IFMA */
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        /* EDX: AVX_VNNI_INT8, AVX_NE_CONVERT, AMX_COMPLEX, AVX_VNNI_INT16, AVX10 */
        r[3] &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0xD && sub == 0) {
        /* EAX: the register state XSAVE supports, for code that reads it here: less opmask/ZMM and AMX tiles */
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
    } else if (leaf == 0x1D || leaf == 0x1E || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tile and AVX10 leaves */
    }
}

/* The default action for SIGSEGV, now: the process ends as it would have without this library. */
static void die_by_default(void) {
    struct sigaction dfl;
    sigset_t segv;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    real_sigaction(SIGSEGV, &dfl, NULL);
    sigemptyset(&segv);
    sigaddset(&segv, SIGSEGV);
    real_pthread_sigmask(SIG_UNBLOCK, &segv, NULL);
    raise(SIGSEGV);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    /* A CPUID fault is a general protection fault (SI_KERNEL); page faults are not, and their RIP may be unreadable. */
    if (info->si_code == SI_KERNEL) {
        const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
        if (ip[0] == 0x0F && ip[1] == 0xA2) {
            uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], r[4];
            if (cpuid_faults(0) != 0) {
                say("avx2-view: arch_prctl(ARCH_SET_CPUID) refused (a sandbox?): cannot answer CPUID\n");
                _exit(3);
            }
            __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
            cpuid_faults(1);
            hide(leaf, sub, r);
            regs[REG_RAX] = r[0];
            regs[REG_RBX] = r[1];
            regs[REG_RCX] = r[2];
            regs[REG_RDX] = r[3];
            regs[REG_RIP] += 2;
            answered++;
            return;
        }
    }
    /* Any other SIGSEGV goes where the program asked. */
    struct sigaction asked = program_handler;
    if (asked.sa_handler == SIG_IGN && info->si_code <= 0) return; /* sent by kill/raise, and ignored */
    if (asked.sa_handler == SIG_DFL || asked.sa_handler == SIG_IGN) {
        die_by_default(); /* a fault cannot be ignored: the kernel would end the process too */
        return;
    }
    if (asked.sa_flags & SA_RESETHAND) {
        memset(&program_handler, 0, sizeof program_handler);
        program_handler.sa_handler = SIG_DFL;
    }
    if (asked.sa_flags & SA_SIGINFO) asked.sa_sigaction(sig, info, context);
    else asked.sa_handler(sig);
}

/* SIGSEGV handlers the program asks for are kept aside; ours stays installed. Other signals pass through. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    resolve();
    if (sig != SIGSEGV) return real_sigaction(sig, act, old);
    if (old) *old = program_handler;
    if (act) program_handler = *act;
    return 0;
}

static sighandler_t set_handler(int sig, sighandler_t handler, int flags) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = flags;
    sigemptyset(&act.sa_mask);
    if (sigaction(sig, &act, &old) != 0) return SIG_ERR;
    return old.sa_handler;
}

sighandler_t signal(int sig, sighandler_t handler) { return set_handler(sig, handler, SA_RESTART); }
sighandler_t bsd_signal(int sig, sighandler_t handler) { return set_handler(sig, handler, SA_RESTART); }
sighandler_t sysv_signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, SA_RESETHAND | SA_NODEFER);
}

/* SIGSEGV stays deliverable: a CPUID while it is blocked would end the process. */
static int leave_segv(mask_fn real, int how, const sigset_t *set, sigset_t *old) {
    sigset_t without;
    resolve();
    if (set && (how == SIG_BLOCK || how == SIG_SETMASK) && sigismember(set, SIGSEGV) == 1) {
        without = *set;
        sigdelset(&without, SIGSEGV);
        set = &without;
    }
    return real(how, set, old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) { return leave_segv(real_sigprocmask, how, set, old); }
int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    return leave_segv(real_pthread_sigmask, how, set, old);
}

__attribute__((constructor)) static void start(void) {
    struct sigaction ours;
    resolve();
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_segv;
    /* SA_NODEFER: a CPUID inside the program's own SIGSEGV handler (called from ours) is answered too;
       SA_ONSTACK: faulthandler's alternate stack still serves a stack overflow. */
    ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    real_sigaction(SIGSEGV, &ours, &program_handler);
    if (cpuid_faults(1) != 0) {
        say("avx2-view: this CPU or kernel cannot make CPUID fault (no cpuid_fault flag), so AVX-512 cannot be hidden\n");
        _exit(3);
    }
    setenv("TEXTCLASS_CPU", "avx2", 1);
}

__attribute__((destructor)) static void stop(void) {
    if (getenv("AVX2_VIEW_REPORT")) {
        char text[96];
        snprintf(text, sizeof text, "avx2-view: answered %lu CPUID instructions\n", answered);
        say(text);
    }
}
