/* codegen/llvm_target.c -- the --target=llvm entry of the target registry,
 * built in both configurations: its functions come from llvm_jit.c with LLVM 14
 * and from llvm_none.c (which say netc was built without LLVM) without it. */
#include "codegen/codegen.h"

/* The C backend's kernels and memory plan, but no max pool closing a
 * convolution's kernel (the LLVM backend emits pooling on its own). */
static const struct pass_target plan_llvm = {.name = "llvm",
                                             .fuse_max_inputs = 12,
                                             .fuse_max_outputs = 4,
                                             .fuse_max_arrays = 15,
                                             .fuse_batchnorm = true,
                                             .fuse_pool = false,
                                             .fuse_gemm_update = true,
                                             .pool_grad_weight = cg_pool_grad_weight_fast,
                                             .scratch = cgc_op_scratch};

const struct cg_target cg_target_llvm = {
    .name = "llvm",
    .ext = ".ll",
    .help = "LLVM IR through the LLVM-C API: JIT-compiled in process by `netc run`, an object file for `netc "
            "build`",
    .emit = cg_llvm_emit,
    .plan = &plan_llvm,
    .emit_object = cg_llvm_object,
    .run = cg_llvm_run,
    .no_mpi = true,
};
