// libresin: C++17 inside, the C ABI of resin.h outside. Same arithmetic as the Numba
// kernels in resin.kernels (float32 blend, float64 window profiles), checked against
// them by tests/kernels/test_native.py.
#include "resin.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace {

thread_local std::string g_last_error;

struct InvalidArgument {
    std::string message;
};

resin_status fail(resin_status status, std::string message) {
    g_last_error = std::move(message);
    return status;
}

// Runs `body`, turning every exception into a status: nothing crosses the C boundary.
template <typename F>
resin_status guarded(F &&body) noexcept {
    try {
        g_last_error.clear();
        body();
        return RESIN_OK;
    } catch (const InvalidArgument &e) {
        return fail(RESIN_ERROR_INVALID_ARGUMENT, e.message);
    } catch (const std::bad_alloc &) {
        return fail(RESIN_ERROR_OUT_OF_MEMORY, "out of memory.");
    } catch (const std::exception &e) {
        return fail(RESIN_ERROR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(RESIN_ERROR_INTERNAL, "internal error.");
    }
}

void require(bool ok, const char *message) {
    if (!ok) throw InvalidArgument{message};
}

struct Shape {
    int64_t z, y, x;
    int64_t size() const { return z * y * x; }
};

Shape shape_of(const int64_t *s, const char *what) {
    require(s != nullptr, what);
    require(s[0] > 0 && s[1] > 0 && s[2] > 0, what);
    return Shape{s[0], s[1], s[2]};
}

std::vector<double> profile(int64_t n, int mode, double sigma_scale) {
    std::vector<double> w(static_cast<size_t>(n));
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < n; ++i) {
        double v = 1.0;
        if (mode == RESIN_WINDOW_COSINE) {
            double s = std::sin(pi * (static_cast<double>(i) + 0.5) / static_cast<double>(n));
            v = s * s;
        } else if (mode == RESIN_WINDOW_GAUSSIAN) {
            double d = (static_cast<double>(i) - (static_cast<double>(n) - 1) / 2.0) /
                       (sigma_scale * static_cast<double>(n));
            v = std::exp(-0.5 * (d * d));
        }
        w[static_cast<size_t>(i)] = std::max(v, 1e-6);
    }
    return w;
}

template <typename T>
T lowest() {
    if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
    return std::numeric_limits<T>::lowest();
}

template <typename T>
inline T running_max(T m, T v) { return v > m ? v : m; }  // a NaN voxel never wins

template <typename T>
void mip_init_t(const Shape &s, void *mz, void *my, void *mx) {
    std::fill_n(static_cast<T *>(mz), s.y * s.x, lowest<T>());
    std::fill_n(static_cast<T *>(my), s.z * s.x, lowest<T>());
    std::fill_n(static_cast<T *>(mx), s.z * s.y, lowest<T>());
}

template <typename T>
void mip_update_t(const Shape &vol, const Shape &c, const int64_t *off, const T *chunk,
                  T *mz, T *my, T *mx) {
    for (int64_t z = 0; z < c.z; ++z) {
        T *y_row = my + (off[0] + z) * vol.x + off[2];
        for (int64_t y = 0; y < c.y; ++y) {
            const T *row = chunk + (z * c.y + y) * c.x;
            T *z_row = mz + (off[1] + y) * vol.x + off[2];
            T m = mx[(off[0] + z) * vol.y + off[1] + y];
            for (int64_t x = 0; x < c.x; ++x) {
                const T v = row[x];
                z_row[x] = running_max(z_row[x], v);
                y_row[x] = running_max(y_row[x], v);
                m = running_max(m, v);
            }
            mx[(off[0] + z) * vol.y + off[1] + y] = m;
        }
    }
}

template <typename T>
void finalize_int(const float *acc, const float *wsum, int64_t n, float scale, float low,
                  T *out) {
    const float top = static_cast<float>(std::numeric_limits<T>::max());
    for (int64_t i = 0; i < n; ++i) {
        float v = acc[i] / wsum[i] * scale + low;
        if (!(v >= 0.0f)) v = 0.0f;  // NaN and negatives
        else if (v > top) v = top;
        out[i] = static_cast<T>(std::nearbyint(v));  // default rounding: half to even
    }
}

}  // namespace

extern "C" {

int resin_abi_version(void) { return RESIN_ABI_VERSION; }

const char *resin_last_error(void) { return g_last_error.c_str(); }

resin_status resin_tile_window(const int64_t shape[3], int mode, double sigma_scale,
                               float *out) {
    return guarded([&] {
        Shape s = shape_of(shape, "tile shape must be three positive integers.");
        require(out != nullptr, "out must not be NULL.");
        require(mode == RESIN_WINDOW_GAUSSIAN || mode == RESIN_WINDOW_COSINE ||
                    mode == RESIN_WINDOW_CONSTANT,
                "mode must be RESIN_WINDOW_GAUSSIAN, _COSINE or _CONSTANT.");
        require(std::isfinite(sigma_scale) && sigma_scale > 0,
                "sigma_scale must be a positive number.");
        auto pz = profile(s.z, mode, sigma_scale);
        auto py = profile(s.y, mode, sigma_scale);
        auto px = profile(s.x, mode, sigma_scale);
        for (int64_t z = 0; z < s.z; ++z)
            for (int64_t y = 0; y < s.y; ++y) {
                const double zy = pz[z] * py[y];
                float *row = out + (z * s.y + y) * s.x;
                for (int64_t x = 0; x < s.x; ++x) row[x] = static_cast<float>(zy * px[x]);
            }
    });
}

resin_status resin_accumulate(float *acc, float *wsum, const int64_t acc_shape[3],
                              const float *tile, const float *window,
                              const int64_t tile_shape[3], const int64_t offset[3]) {
    return guarded([&] {
        Shape a = shape_of(acc_shape, "acc_shape must be three positive integers.");
        Shape t = shape_of(tile_shape, "tile_shape must be three positive integers.");
        require(acc && wsum && tile && window && offset,
                "acc, wsum, tile, window and offset must not be NULL.");
        const int64_t dims[3] = {a.z, a.y, a.x}, tdims[3] = {t.z, t.y, t.x};
        int64_t a0[3], t0[3], n[3];
        for (int d = 0; d < 3; ++d) {
            const int64_t lo = std::max<int64_t>(offset[d], 0);
            const int64_t hi = std::min<int64_t>(offset[d] + tdims[d], dims[d]);
            if (hi <= lo) return;  // entirely outside: nothing to add
            a0[d] = lo;
            t0[d] = lo - offset[d];
            n[d] = hi - lo;
        }
        for (int64_t z = 0; z < n[0]; ++z)
            for (int64_t y = 0; y < n[1]; ++y) {
                const int64_t ai = ((a0[0] + z) * a.y + a0[1] + y) * a.x + a0[2];
                const int64_t ti = ((t0[0] + z) * t.y + t0[1] + y) * t.x + t0[2];
                float *ar = acc + ai, *wr = wsum + ai;
                const float *tr = tile + ti, *kr = window + ti;
                for (int64_t x = 0; x < n[2]; ++x) {
                    const float w = kr[x];
                    const float product = tr[x] * w;  // rounded before the add, as NumPy
                    ar[x] += product;
                    wr[x] += w;
                }
            }
    });
}

resin_status resin_finalize(const float *acc, const float *wsum, const int64_t shape[3],
                            int dtype, double low, double high, void *out) {
    return guarded([&] {
        Shape s = shape_of(shape, "shape must be three positive integers.");
        require(acc && wsum && out, "acc, wsum and out must not be NULL.");
        require(std::isfinite(low) && std::isfinite(high), "low and high must be finite.");
        const float scale = static_cast<float>(high - low), lo = static_cast<float>(low);
        const int64_t n = s.size();
        switch (dtype) {
            case RESIN_UINT8:
                finalize_int(acc, wsum, n, scale, lo, static_cast<uint8_t *>(out));
                break;
            case RESIN_UINT16:
                finalize_int(acc, wsum, n, scale, lo, static_cast<uint16_t *>(out));
                break;
            case RESIN_FLOAT32: {
                float *o = static_cast<float *>(out);
                for (int64_t i = 0; i < n; ++i) {
                    const float v = acc[i] / wsum[i] * scale + lo;
                    o[i] = v == v ? v : 0.0f;
                }
                break;
            }
            default:
                throw InvalidArgument{"dtype must be RESIN_UINT8, RESIN_UINT16 or RESIN_FLOAT32."};
        }
    });
}

resin_status resin_mip_init(const int64_t shape[3], int dtype, void *mz, void *my, void *mx) {
    return guarded([&] {
        Shape s = shape_of(shape, "shape must be three positive integers.");
        require(mz && my && mx, "mz, my and mx must not be NULL.");
        switch (dtype) {
            case RESIN_UINT8: mip_init_t<uint8_t>(s, mz, my, mx); break;
            case RESIN_UINT16: mip_init_t<uint16_t>(s, mz, my, mx); break;
            case RESIN_FLOAT32: mip_init_t<float>(s, mz, my, mx); break;
            default:
                throw InvalidArgument{"dtype must be RESIN_UINT8, RESIN_UINT16 or RESIN_FLOAT32."};
        }
    });
}

resin_status resin_mip_update(void *mz, void *my, void *mx, const int64_t volume_shape[3],
                              const void *chunk, const int64_t chunk_shape[3],
                              const int64_t offset[3], int dtype) {
    return guarded([&] {
        Shape v = shape_of(volume_shape, "volume_shape must be three positive integers.");
        Shape c = shape_of(chunk_shape, "chunk_shape must be three positive integers.");
        require(mz && my && mx && chunk && offset, "no argument may be NULL.");
        const int64_t vd[3] = {v.z, v.y, v.x}, cd[3] = {c.z, c.y, c.x};
        for (int d = 0; d < 3; ++d)
            require(offset[d] >= 0 && offset[d] + cd[d] <= vd[d],
                    "the chunk at this offset does not fit inside the volume.");
        switch (dtype) {
            case RESIN_UINT8:
                mip_update_t(v, c, offset, static_cast<const uint8_t *>(chunk),
                             static_cast<uint8_t *>(mz), static_cast<uint8_t *>(my),
                             static_cast<uint8_t *>(mx));
                break;
            case RESIN_UINT16:
                mip_update_t(v, c, offset, static_cast<const uint16_t *>(chunk),
                             static_cast<uint16_t *>(mz), static_cast<uint16_t *>(my),
                             static_cast<uint16_t *>(mx));
                break;
            case RESIN_FLOAT32:
                mip_update_t(v, c, offset, static_cast<const float *>(chunk),
                             static_cast<float *>(mz), static_cast<float *>(my),
                             static_cast<float *>(mx));
                break;
            default:
                throw InvalidArgument{"dtype must be RESIN_UINT8, RESIN_UINT16 or RESIN_FLOAT32."};
        }
    });
}

resin_status resin_mip(const void *volume, const int64_t shape[3], int dtype, void *mz,
                       void *my, void *mx) {
    const resin_status s = resin_mip_init(shape, dtype, mz, my, mx);
    if (s != RESIN_OK) return s;
    const int64_t zero[3] = {0, 0, 0};
    return resin_mip_update(mz, my, mx, shape, volume, shape, zero, dtype);
}

}  // extern "C"
