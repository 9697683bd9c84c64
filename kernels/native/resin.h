/* resin.h - the C ABI of libresin, the embeddable core of the RESIN runtime.
 *
 * For C/C++ microscope control software: tile blending (window, accumulate, finalize)
 * and maximum intensity projections on host memory. Arrays are C-contiguous ZYX
 * (x fastest); shapes and offsets are int64_t[3] as {z, y, x}.
 *
 * Every function returns a resin_status; on failure resin_last_error() gives one
 * sentence saying what was wrong (per thread). No C++ exception crosses this boundary.
 * The ABI version changes whenever a signature or a documented behaviour changes.
 */
#ifndef RESIN_H
#define RESIN_H

#include <stdint.h>

#if defined(_WIN32)
#  if defined(RESIN_BUILDING)
#    define RESIN_API __declspec(dllexport)
#  else
#    define RESIN_API __declspec(dllimport)
#  endif
#else
#  define RESIN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define RESIN_ABI_VERSION 1

typedef enum resin_status {
    RESIN_OK = 0,
    RESIN_ERROR_INVALID_ARGUMENT = 1, /* a null pointer, bad shape, dtype or mode */
    RESIN_ERROR_OUT_OF_MEMORY = 2,
    RESIN_ERROR_INTERNAL = 3
} resin_status;

typedef enum resin_dtype {
    RESIN_UINT8 = 1,
    RESIN_UINT16 = 2,
    RESIN_FLOAT32 = 3
} resin_dtype;

typedef enum resin_window_mode {
    RESIN_WINDOW_GAUSSIAN = 0,
    RESIN_WINDOW_COSINE = 1,
    RESIN_WINDOW_CONSTANT = 2
} resin_window_mode;

/* RESIN_ABI_VERSION of the library actually loaded. */
RESIN_API int resin_abi_version(void);

/* The last error of this thread as one sentence ("" if none). Valid until the next call. */
RESIN_API const char *resin_last_error(void);

/* Separable blend weights for a tile of `shape`, float32, strictly positive (each axis
 * floored at 1e-6): gaussian exp(-d^2 / 2 (sigma_scale * n)^2) around the centre, cosine
 * = Hann window at voxel centres, constant = 1. `out` holds shape[0]*shape[1]*shape[2]. */
RESIN_API resin_status resin_tile_window(const int64_t shape[3], int mode, double sigma_scale,
                                         float *out);

/* acc[region] += tile * window; wsum[region] += window, where region is the tile placed
 * at `offset` inside acc (of acc_shape), clipped to acc's bounds (offset may be negative). */
RESIN_API resin_status resin_accumulate(float *acc, float *wsum, const int64_t acc_shape[3],
                                        const float *tile, const float *window,
                                        const int64_t tile_shape[3], const int64_t offset[3]);

/* out = acc / wsum * (high - low) + low in float32, NaN -> 0; for uint8/uint16 clipped to
 * the type's range and rounded half to even. `out` is of `dtype`, same shape as acc. */
RESIN_API resin_status resin_finalize(const float *acc, const float *wsum,
                                      const int64_t shape[3], int dtype, double low,
                                      double high, void *out);

/* Fill the projections of a volume of `shape` (mz: Y*X, my: Z*X, mx: Z*Y, of `dtype`)
 * with the type's minimum (-inf for float32). */
RESIN_API resin_status resin_mip_init(const int64_t shape[3], int dtype, void *mz, void *my,
                                      void *mx);

/* Running maxima of `chunk` (chunk_shape) sitting at `offset` inside a volume of
 * volume_shape; the chunk must lie inside. NaN voxels never win. */
RESIN_API resin_status resin_mip_update(void *mz, void *my, void *mx,
                                        const int64_t volume_shape[3], const void *chunk,
                                        const int64_t chunk_shape[3], const int64_t offset[3],
                                        int dtype);

/* The three projections of a whole volume (init + update). */
RESIN_API resin_status resin_mip(const void *volume, const int64_t shape[3], int dtype,
                                 void *mz, void *my, void *mx);

#ifdef __cplusplus
}
#endif

#endif /* RESIN_H */
