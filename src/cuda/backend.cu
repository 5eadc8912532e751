/* cuda/backend.cu: the CUDA backend's table, its devices and buffers.
 * Device memory comes from cudaMalloc; every op of a device runs on its one
 * stream, in the order issued; cb_ops_download waits for the work before it.
 * The CUDA runtime is linked statically: on a machine with no driver or no
 * GPU, cudaGetDeviceCount fails and the backend reports "no usable GPU". */
#include "common.cuh"
#include "kernels.cuh"

#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>

int cb_cuda_sync_each;

/* no core file: a CUDA process's is the size of its mappings (gigabytes) */
static void no_core(void) {
    struct rlimit r = {0, 0};
    setrlimit(RLIMIT_CORE, &r);
    fflush(stdout);
}

int cb_cuda_error_is_sticky(cudaError_t e) {
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
        return 1;
    default:
        return 0;
    }
}

void cb_cuda_fatal(const char *file, int line, const char *what, const char *msg) {
    no_core();
    fprintf(stderr, "colbert: cuda error: %s:%d: %s: %s\n", file, line, what, msg);
    abort();
}

void cb_cuda_fatal_err(const char *file, int line, const char *what, cudaError_t e) {
    no_core();
    fprintf(stderr, "colbert: cuda error: %s:%d: %s: %s (%s)\n", file, line, what, cudaGetErrorString(e),
            cudaGetErrorName(e));
    if (cb_cuda_error_is_sticky(e) && !cb_cuda_sync_each)
        fprintf(stderr, "HINT: a kernel's fault shows at the next call that synchronises, which may belong to a "
                "later op; run again with COLBERT_CUDA_SYNC=1 to check after every launch and name the kernel\n");
    abort();
}

void cb_cuda_die(const char *fmt, ...) {
    no_core();
    va_list ap;
    va_start(ap, fmt);
    fputs("colbert: cuda: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void cb_cuda_check_launch(const char *file, int line, const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && cb_cuda_sync_each) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) return;
    char what[160];
    snprintf(what, sizeof what, "%s in %s", cb_cuda_sync_each ? "the kernel launched here (COLBERT_CUDA_SYNC)" :
             "a kernel launch", op);
    cb_cuda_fatal_err(file, line, what, e);
}

static thread_local int current_device = -1;

cuda_state *cb_cuda_enter(ops_device *d) {
    cuda_state *s = (cuda_state *)d->impl;
    if (current_device != s->index) {
        CU_CHECK(cudaSetDevice(s->index));
        current_device = s->index;
    }
    return s;
}

void *cb_cuda_scratch(cuda_state *s, size_t bytes) {
    if (bytes <= s->scratch_bytes) return s->scratch;
    size_t grow = bytes + bytes / 4;
    grow = (grow + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    CU_CHECK(cudaStreamSynchronize(s->stream));
    if (s->scratch) CU_CHECK(cudaFree(s->scratch));
    s->scratch = NULL;
    s->scratch_bytes = 0;
    cudaError_t e = cudaMalloc(&s->scratch, grow);
    if (e == cudaErrorMemoryAllocation)
        cb_cuda_die("out of GPU memory: the scratch arena needs %zu bytes (%.2f GiB)", grow, (double)grow / (1 << 30));
    if (e != cudaSuccess) cb_cuda_fatal_err(__FILE__, __LINE__, "cudaMalloc (the scratch arena)", e);
    s->scratch_bytes = grow;
    return s->scratch;
}

/* ---- buffers ------------------------------------------------------------- */

static void *cu_alloc(ops_device *d, size_t bytes, const char *what, cb_err *err) {
    cb_cuda_enter(d);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess && e != cudaErrorMemoryAllocation) {
        /* not a lack of memory: say what it is (a sticky error is an
         * earlier kernel's fault, and stays) */
        cb_err_set(err, "cuda:%d: cannot allocate %s (%zu bytes): %s (%s)%s", d->index, what ? what : "a buffer",
                   bytes, cudaGetErrorString(e), cudaGetErrorName(e),
                   cb_cuda_error_is_sticky(e) ? "; an earlier kernel failed (COLBERT_CUDA_SYNC=1 names it)" : "");
        if (!cb_cuda_error_is_sticky(e)) cudaGetLastError();
        return NULL;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cb_err_set(err, "out of GPU memory: %s needs %zu bytes (%.2f GiB); cuda:%d has %.2f GiB free of %.2f GiB",
                   what ? what : "a buffer", bytes, (double)bytes / (1 << 30), d->index,
                   (double)free_b / (1 << 30), (double)total_b / (1 << 30));
        return NULL;
    }
    return p;
}

static void cu_free(ops_device *d, void *p) {
    cb_cuda_enter(d);
    CU_CHECK(cudaFree(p));
}

/* From pageable memory, cudaMemcpyAsync returns once src has been staged:
 * the caller may reuse src at once. */
static void cu_upload(ops_device *d, void *dst, const void *src, size_t bytes) {
    cuda_state *s = cb_cuda_enter(d);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->stream));
}

static void cu_download(ops_device *d, void *dst, const void *src, size_t bytes) {
    cuda_state *s = cb_cuda_enter(d);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->stream));
    CU_CHECK(cudaStreamSynchronize(s->stream));
}

static void cu_copy(ops_device *d, void *dst, const void *src, size_t bytes) {
    cuda_state *s = cb_cuda_enter(d);
    if (dst != src) CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s->stream));
}

static void cu_zero(ops_device *d, void *p, size_t bytes) {
    cuda_state *s = cb_cuda_enter(d);
    CU_CHECK(cudaMemsetAsync(p, 0, bytes, s->stream));
}

static void cu_sync(ops_device *d) {
    cuda_state *s = cb_cuda_enter(d);
    CU_CHECK(cudaStreamSynchronize(s->stream));
}

static const ops_backend table = {
    .name = "cuda",
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .zero = cu_zero,
    .sync = cu_sync,
    .linear_forward = cb_cuda_linear_forward,
    .linear_backward = cb_cuda_linear_backward,
    .embed_forward = cb_cuda_embed_forward,
    .embed_backward = cb_cuda_embed_backward,
    .layernorm_forward = cb_cuda_layernorm_forward,
    .layernorm_backward = cb_cuda_layernorm_backward,
    .gelu_forward = cb_cuda_gelu_forward,
    .gelu_backward = cb_cuda_gelu_backward,
    .geglu_forward = cb_cuda_geglu_forward,
    .geglu_backward = cb_cuda_geglu_backward,
    .add = cb_cuda_add,
    .dropout_forward = cb_cuda_dropout_forward,
    .dropout_backward = cb_cuda_dropout_backward,
    .attention_workspace = cb_cuda_attention_workspace,
    .attention_forward = cb_cuda_attention_forward,
    .attention_backward = cb_cuda_attention_backward,
    .rope_forward = cb_cuda_rope_forward,
    .rope_backward = cb_cuda_rope_backward,
    .keep_relu_forward = cb_cuda_keep_relu_forward,
    .keep_relu_backward = cb_cuda_keep_relu_backward,
    .l2norm_forward = cb_cuda_l2norm_forward,
    .l2norm_backward = cb_cuda_l2norm_backward,
    .maxsim_workspace = cb_cuda_maxsim_workspace,
    .maxsim_forward = cb_cuda_maxsim_forward,
    .maxsim_backward = cb_cuda_maxsim_backward,
    .loss = cb_cuda_loss,
    .clip_grad_norm = cb_cuda_clip_grad_norm,
    .adamw = cb_cuda_adamw,
};

const ops_backend *cb_cuda_backend(void) { return &table; }

/* ---- devices ------------------------------------------------------------- */

/* Why the runtime found no GPU, in words a user can act on. */
static void no_gpu_reason(cudaError_t e, char *why, size_t n) {
    int drv = 0;
    cudaDriverGetVersion(&drv);
    cudaGetLastError();
    if (e == cudaErrorInsufficientDriver && drv == 0)
        snprintf(why, n, "no NVIDIA driver: libcuda.so.1 was not found");
    else if (e == cudaErrorInsufficientDriver)
        snprintf(why, n, "the NVIDIA driver supports CUDA %d.%d; this build needs CUDA %d.%d or newer", drv / 1000,
                 drv % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    else if (e == cudaErrorNoDevice)
        snprintf(why, n, "the driver sees no GPU");
    else
        snprintf(why, n, "%s", cudaGetErrorString(e));
}

/* GPUs of compute capability 8.0 or newer (the kernels are built for sm_80
 * and sm_90, with PTX for newer ones). */
static int usable(const cudaDeviceProp *p) { return p->major >= 8; }

extern "C" int cb_cuda_usable_count(int *first, char *why, size_t why_bytes) {
    int n = 0;
    if (first) *first = -1;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        no_gpu_reason(e, why, why_bytes);
        return 0;
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) == cudaSuccess && usable(&p)) {
            if (first && *first < 0) *first = i;
            ok++;
        }
    }
    if (!ok && why) {
        if (n == 0) snprintf(why, why_bytes, "the driver sees no GPU");
        else snprintf(why, why_bytes, "%d GPU%s, none of compute capability 8.0 or newer", n, n > 1 ? "s" : "");
    }
    cudaGetLastError();
    return ok;
}

static __global__ void probe_kernel(int *out) { *out = 42; }

extern "C" int cb_cuda_device_open(ops_device *d, int index, ops_precision precision, cb_err *err) {
    int n = 0;
    char why[256];
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        no_gpu_reason(e, why, sizeof why);
        return cb_err_set(err, "cuda: no usable GPU (%s)", why);
    }
    if (n == 0) return cb_err_set(err, "cuda: no usable GPU (the driver sees no GPU)");
    if (index < 0 || index >= n)
        return cb_err_set(err, "cuda:%d: no such GPU (the driver sees %d: cuda:0 .. cuda:%d)", index, n, n - 1);
    {
        const char *sync = getenv("COLBERT_CUDA_SYNC");
        if (sync && *sync && strcmp(sync, "0") != 0) cb_cuda_sync_each = 1;
    }
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!s) return cb_err_set(err, "out of memory: the CUDA device state");
    s->index = index;
    int rc = -1;
    int *probe = NULL;
    if ((e = cudaGetDeviceProperties(&s->prop, index)) != cudaSuccess || (e = cudaSetDevice(index)) != cudaSuccess) {
        cb_err_set(err, "cuda:%d: %s", index, cudaGetErrorString(e));
        goto fail;
    }
    current_device = index;
    if (!usable(&s->prop)) {
        cb_err_set(err, "cuda:%d: %s has compute capability %d.%d; colbert.c's kernels need 8.0 or newer", index,
                   s->prop.name, s->prop.major, s->prop.minor);
        goto fail;
    }
    if ((e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cb_err_set(err, "cuda:%d: cannot create a stream: %s", index, cudaGetErrorString(e));
        goto fail;
    }
    /* one kernel, to learn now (not in the first op) that this GPU runs ours */
    if ((e = cudaMalloc(&probe, sizeof(int))) == cudaSuccess) {
        probe_kernel<<<1, 1, 0, s->stream>>>(probe);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaStreamSynchronize(s->stream);
        cudaFree(probe);
    }
    if (e != cudaSuccess) {
        cb_err_set(err, "cuda:%d: %s (sm_%d%d) cannot run this build's kernels: %s", index, s->prop.name,
                   s->prop.major, s->prop.minor, cudaGetErrorString(e));
        cudaGetLastError();
        goto fail;
    }
    if ((e = cudaMalloc((void **)&s->norm_partial, 1024 * sizeof(double) + 64)) != cudaSuccess) {
        cb_err_set(err, "cuda:%d: out of GPU memory: %s", index, cudaGetErrorString(e));
        goto fail;
    }
    s->norm_out = (float *)(s->norm_partial + 1024);
    if (cb_cuda_matmul_init(s, err)) goto fail;
    d->fn = &table;
    d->kind = "cuda";
    d->index = index;
    d->precision = precision;
    d->impl = s;
    {
        char lt[160];
        cb_cuda_lt_describe(lt, sizeof lt);
        snprintf(d->desc, sizeof d->desc, "cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB), %s matmuls, %s", index,
                 s->prop.name, s->prop.major, s->prop.minor, s->prop.multiProcessorCount,
                 (double)s->prop.totalGlobalMem / (1 << 30),
                 precision == OPS_BF16 ? "bf16 (fp32 accumulation)" : "fp32 (no TF32)", lt);
    }
    return 0;
fail:
    rc = -1;
    cb_cuda_matmul_free(s);
    if (s->norm_partial) cudaFree(s->norm_partial);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(s);
    return rc;
}

extern "C" void cb_cuda_device_close(ops_device *d) {
    if (!d || !d->impl) return;
    cuda_state *s = cb_cuda_enter(d);
    cudaStreamSynchronize(s->stream);
    cb_cuda_matmul_free(s);
    if (s->scratch) cudaFree(s->scratch);
    if (s->norm_partial) cudaFree(s->norm_partial);
    free(s->h_buf);
    cudaStreamDestroy(s->stream);
    free(s);
    d->impl = NULL;
}

#ifndef CB_CUDA_ARCHS
#define CB_CUDA_ARCHS "?"
#endif

/* printf into buf at *o, never past bytes */
__attribute__((format(printf, 4, 5))) static void put(char *buf, size_t bytes, size_t *o, const char *fmt, ...) {
    if (*o + 1 >= bytes) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *o, bytes - *o, fmt, ap);
    va_end(ap);
    if (k > 0) *o += (size_t)k < bytes - *o ? (size_t)k : bytes - *o - 1;
}

extern "C" size_t cb_cuda_info(char *buf, size_t bytes) {
    size_t o = 0;
#define PUT(...) put(buf, bytes, &o, __VA_ARGS__)
    int drv = 0;
    cudaDriverGetVersion(&drv);
    PUT("cuda: runtime %d.%d (linked statically), kernels for %s\n", CUDART_VERSION / 1000,
        CUDART_VERSION % 1000 / 10, CB_CUDA_ARCHS);
    if (drv) PUT("cuda: the driver supports CUDA %d.%d\n", drv / 1000, drv % 1000 / 10);
    char lt[256];
    cb_cuda_lt_describe(lt, sizeof lt);
    PUT("cuda: %s\n", lt);
    {
        const char *sync = getenv("COLBERT_CUDA_SYNC");
        if (sync && *sync && strcmp(sync, "0") != 0)
            PUT("cuda: COLBERT_CUDA_SYNC is set: every kernel launch is checked at once (slow)\n");
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        char why[256];
        no_gpu_reason(e, why, sizeof why);
        PUT("cuda: no usable GPU (%s)\n", why);
        return o;
    }
    if (n == 0) PUT("cuda: no usable GPU (the driver sees no GPU)\n");
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        PUT("cuda:%d %s: compute capability %d.%d, %d SMs, %.1f GiB, %d MiB L2%s\n", i, p.name, p.major, p.minor,
            p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30), p.l2CacheSize >> 20,
            usable(&p) ? "" : " (not usable: needs 8.0 or newer)");
    }
    cudaGetLastError();
#undef PUT
    return o;
}
