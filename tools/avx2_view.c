/* avx2_view: run a program as it would run on an AVX2-only x86 CPU, on a CPU that has AVX-512, VNNI or AMX.
 *
 * Loaded with LD_PRELOAD (tools/avx2-view builds and loads it). Libraries choose their kernels by the CPUID
 * instruction (ONNX Runtime's MLAS, PyTorch's cpuinfo, oneDNN, numpy); Linux can make CPUID fault instead of
 * answering (arch_prctl ARCH_SET_CPUID, the "cpuid_fault" flag in /proc/cpuinfo, also inside KVM guests). This
 * library turns that on, answers each faulting CPUID itself with the real answer less every AVX-512, VNNI
 * (AVX-512 and VEX), bf16, fp16 and AMX bit and the register state they need, and steps over the instruction. So
 * every kernel picked after start-up is the one an AVX2 + FMA machine would pick.
 *
 * What it cannot hide: the CPU's speed at AVX2 code (a Zen 4 core is not a Zen 2/3 core), glibc's own choice of
 * string routines (made before any library loads), and /proc/cpuinfo (textclass reads that; tools/avx2-view sets
 * TEXTCLASS_CPU=avx2 so that it chooses as such a machine would).
 *
 * SIGSEGV: CPUID's fault arrives as SIGSEGV. Handlers the program installs for SIGSEGV (Python's faulthandler,
 * pytest) are kept aside and called for every other SIGSEGV, so crashes still reach them.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static sigaction_fn real_sigaction;
static struct sigaction program_handler; /* what the program asked for SIGSEGV: SIG_DFL until it asks */
static volatile unsigned long answered;   /* CPUIDs answered, for AVX2_VIEW_REPORT */

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
        /* EAX: the register state XSAVE supports: drop opmask/ZMM (5-7) and AMX tiles (17-18) */
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
    } else if (leaf == 0x1D || leaf == 0x1E || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tile and AVX10 leaves */
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    /* A CPUID fault is a general protection fault (SI_KERNEL); page faults are not, and their RIP may be unreadable. */
    if (info->si_code == SI_KERNEL) {
        const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
        if (ip[0] == 0x0F && ip[1] == 0xA2) {
            uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], r[4];
            cpuid_faults(0);
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
    /* Any other SIGSEGV: the program's own handler, or the default action (returning re-runs the fault). */
    if (program_handler.sa_flags & SA_SIGINFO) {
        program_handler.sa_sigaction(sig, info, context);
    } else if (program_handler.sa_handler == SIG_DFL || program_handler.sa_handler == SIG_IGN) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(SIGSEGV, &dfl, NULL);
    } else {
        program_handler.sa_handler(sig);
    }
}

/* The program's SIGSEGV handler is kept aside; ours stays installed. Other signals pass through. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV) return real_sigaction(sig, act, old);
    if (old) *old = program_handler;
    if (act) program_handler = *act;
    return 0;
}

static void say(const char *text) {
    ssize_t ignored = write(2, text, strlen(text));
    (void)ignored;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction ours;
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_segv;
    ours.sa_flags = SA_SIGINFO;
    sigemptyset(&ours.sa_mask);
    real_sigaction(SIGSEGV, &ours, &program_handler);
    if (cpuid_faults(1) != 0) {
        say("avx2-view: this CPU or kernel cannot make CPUID fault (no cpuid_fault flag), so AVX-512 cannot be hidden\n");
        _exit(3);
    }
}

__attribute__((destructor)) static void stop(void) {
    if (getenv("AVX2_VIEW_REPORT")) {
        char text[96];
        snprintf(text, sizeof text, "avx2-view: answered %lu CPUID instructions\n", answered);
        say(text);
    }
}
