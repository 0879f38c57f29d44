/* codegen/llvm_jit.c -- what the LLVM backend does with the module llvm_emit.c
 * builds: optimise it for the host processor (the new pass manager's
 * default<O3>, every function told the processor's features and to prefer
 * 512-bit vectors, which AVX-512 machines otherwise use only at 256), then
 * either JIT-compile it in process with ORC's LLJIT and run the training driver
 * on it (`netc run`; the runtime's symbols resolve against netc itself, which
 * links all of libnetrt), write an object file (`netc build`, linked with
 * libnetrt like the C build), or print it as text (`netc emit`). */
#include "codegen/llvm.h"

#include "runtime/netrt.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reports an LLVM error (consumed) as a netc internal-style message; false. */
static bool llvm_failed(const char *what, LLVMErrorRef err) {
    char *msg = LLVMGetErrorMessage(err);
    fprintf(stderr, "netc: error: LLVM %s: %s\n", what, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

/* A target machine for the host processor, with all its features. */
static LLVMTargetMachineRef host_machine(LLVMRelocMode reloc, LLVMCodeModel model) {
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char *triple = LLVMGetDefaultTargetTriple(), *err = NULL;
    LLVMTargetRef t;
    if (LLVMGetTargetFromTriple(triple, &t, &err)) {
        fprintf(stderr, "netc: error: LLVM has no target for %s: %s\n", triple, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(t, triple, cpu, features, LLVMCodeGenLevelAggressive, reloc, model);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return tm;
}

/* Sets the module's triple and layout, tags every function with the host's
 * processor and features, and runs default<O3>. */
static bool optimise(struct lg *g, LLVMTargetMachineRef tm) {
    char *triple = LLVMGetTargetMachineTriple(tm), *cpu = LLVMGetTargetMachineCPU(tm);
    char *features = LLVMGetTargetMachineFeatureString(tm);
    LLVMSetTarget(g->mod, triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(g->mod, dl);
    LLVMDisposeTargetData(dl);
    for (LLVMValueRef f = LLVMGetFirstFunction(g->mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        static const char *const keys[] = {"target-cpu", "target-features", "prefer-vector-width",
                                           "no-trapping-math"};
        const char *vals[] = {cpu, features, "512", "true"};
        for (int i = 0; i < 4; i++) {
            LLVMAttributeRef a = LLVMCreateStringAttribute(g->cx, keys[i], (unsigned)strlen(keys[i]), vals[i],
                                                           (unsigned)strlen(vals[i]));
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, a);
        }
    }
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    char *msg = NULL;
    if (LLVMVerifyModule(g->mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "netc: internal error: the LLVM module does not verify: %s\n", msg);
        LLVMDisposeMessage(msg);
        return false;
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    /* mergefunc first: the forward kernels repeated by every entry point are
     * optimised and compiled once. */
    LLVMErrorRef err = LLVMRunPasses(g->mod, "mergefunc,default<O3>", tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err) return llvm_failed("optimisation", err);
    return true;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* nrt_main may restart the program (nrt_blas_setup: OpenBLAS must load with
 * the processor's core type), which in process would restart netc with the
 * model's arguments: netc restarts itself first, with its own (from
 * /proc/self/cmdline), when that is needed. */
static void blas_setup(void) {
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return;
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *args[256];
    int n = 0;
    for (size_t at = 0; at < len && n < 255; at += strlen(buf + at) + 1) args[n++] = buf + at;
    args[n] = NULL;
    if (n > 0 && n < 255) nrt_blas_setup(n, args, 0);
}

int cg_llvm_run(const struct ir_module *m, const struct cg_options *opt, int argc, char **argv) {
    blas_setup();
    double t0 = now();
    LLVMTargetMachineRef tm = host_machine(LLVMRelocDefault, LLVMCodeModelJITDefault);
    if (!tm) return -1;
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    struct lg g;
    struct cg_options o = *opt;
    o.main = false;
    g.cx = LLVMOrcThreadSafeContextGetContext(tsc);
    if (!lg_module(m, &o, &g) || !optimise(&g, tm)) {
        LLVMOrcDisposeThreadSafeContext(tsc);
        LLVMDisposeTargetMachine(tm);
        return -1;
    }
    double t1 = now();
    const char *dump = getenv("NETC_LLVM_DUMP"); /* the optimised module, for people */
    char *msg = NULL;
    if (dump && *dump && LLVMPrintModuleToFile(g.mod, dump, &msg))
        fprintf(stderr, "netc: cannot write '%s': %s\n", dump, msg);
    LLVMDisposeMessage(msg);
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb,
                                                  LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMOrcLLJITRef jit;
    LLVMErrorRef err = LLVMOrcCreateLLJIT(&jit, jb);
    if (err) {
        LLVMOrcDisposeThreadSafeContext(tsc);
        return llvm_failed("JIT", err), -1;
    }
    LLVMOrcDefinitionGeneratorRef gen;
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(g.mod, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc); /* the module holds it now */
    err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL,
                                                               NULL);
    if (err) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        LLVMOrcDisposeLLJIT(jit);
        return llvm_failed("JIT", err), -1;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), gen);
    err = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm);
    if (err) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        LLVMOrcDisposeLLJIT(jit);
        return llvm_failed("JIT", err), -1;
    }
    LLVMOrcExecutorAddress addr = 0;
    err = LLVMOrcLLJITLookup(jit, &addr, "netc_model");
    if (err) {
        llvm_failed("JIT", err);
        LLVMOrcDisposeLLJIT(jit);
        return -1;
    }
    double t2 = now();
    if (getenv("NETC_LLVM_TIMES"))
        fprintf(stderr, "netc run: LLVM IR and default<O3> %.3f s, JIT code generation %.3f s\n", t1 - t0,
                t2 - t1);
    int rc = nrt_main(argc, argv, (const struct nrt_model *)(uintptr_t)addr);
    fflush(NULL);
    LLVMOrcDisposeLLJIT(jit);
    return rc;
}

bool cg_llvm_object(const struct ir_module *m, const struct cg_options *opt, const char *path) {
    LLVMTargetMachineRef tm = host_machine(LLVMRelocPIC, LLVMCodeModelDefault);
    if (!tm) return false;
    struct lg g;
    g.cx = LLVMContextCreate();
    bool ok = lg_module(m, opt, &g) && optimise(&g, tm);
    char *msg = NULL;
    if (ok && LLVMTargetMachineEmitToFile(tm, g.mod, (char *)path, LLVMObjectFile, &msg)) {
        fprintf(stderr, "netc: error: cannot write '%s': %s\n", path, msg);
        LLVMDisposeMessage(msg);
        ok = false;
    }
    LLVMContextDispose(g.cx);
    LLVMDisposeTargetMachine(tm);
    return ok;
}

/* `netc emit --target=llvm`: the module as LLVM IR text, before optimisation. */
bool cg_llvm_emit(const struct ir_module *m, FILE *out, const struct cg_options *opt) {
    struct lg g;
    g.cx = LLVMContextCreate();
    bool ok = lg_module(m, opt, &g);
    if (ok) {
        char *text = LLVMPrintModuleToString(g.mod);
        fputs(text, out);
        LLVMDisposeMessage(text);
    }
    LLVMContextDispose(g.cx);
    return ok && !ferror(out);
}
