/* CTest: the C header compiles as C, and the library blends and projects correctly. */
#include "resin.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                     \
        }                                                                   \
    } while (0)

enum { Z = 3, Y = 5, X = 7, N = Z * Y * X };

int main(void) {
    CHECK(resin_abi_version() == RESIN_ABI_VERSION);

    /* a bad call returns a status and says why; a good one clears the message */
    const int64_t bad[3] = {0, 4, 4};
    float w[N];
    CHECK(resin_tile_window(bad, RESIN_WINDOW_GAUSSIAN, 0.125, w) == RESIN_ERROR_INVALID_ARGUMENT);
    CHECK(strlen(resin_last_error()) > 0);
    const int64_t tshape[3] = {2, 3, 4};
    CHECK(resin_tile_window(tshape, 42, 0.125, w) == RESIN_ERROR_INVALID_ARGUMENT);
    CHECK(resin_tile_window(tshape, RESIN_WINDOW_COSINE, 0.125, w) == RESIN_OK);
    CHECK(strlen(resin_last_error()) == 0);
    for (int i = 0; i < 24; ++i) CHECK(w[i] > 0.0f);

    /* identity tiles covering the volume with overlaps give the volume back */
    const int64_t shape[3] = {Z, Y, X};
    unsigned short vol[N];
    for (int i = 0; i < N; ++i) vol[i] = (unsigned short)((i * 7919) % 65536);
    float acc[N] = {0}, wsum[N] = {0}, tile[24];
    for (int64_t oz = -1; oz < Z; oz += 1)
        for (int64_t oy = -2; oy < Y; oy += 2)
            for (int64_t ox = -3; ox < X; ox += 3) {
                for (int z = 0; z < 2; ++z)
                    for (int y = 0; y < 3; ++y)
                        for (int x = 0; x < 4; ++x) {
                            int64_t vz = oz + z, vy = oy + y, vx = ox + x;
                            int inside = vz >= 0 && vz < Z && vy >= 0 && vy < Y && vx >= 0 && vx < X;
                            tile[(z * 3 + y) * 4 + x] =
                                inside ? vol[(vz * Y + vy) * X + vx] / 65535.0f : 99.0f;
                        }
                const int64_t off[3] = {oz, oy, ox};
                CHECK(resin_accumulate(acc, wsum, shape, tile, w, tshape, off) == RESIN_OK);
            }
    unsigned short back[N];
    CHECK(resin_finalize(acc, wsum, shape, RESIN_UINT16, 0.0, 65535.0, back) == RESIN_OK);
    for (int i = 0; i < N; ++i) CHECK(back[i] == vol[i]);

    /* MIP against brute force */
    unsigned short mz[Y * X], my[Z * X], mx[Z * Y];
    CHECK(resin_mip(vol, shape, RESIN_UINT16, mz, my, mx) == RESIN_OK);
    for (int y = 0; y < Y; ++y)
        for (int x = 0; x < X; ++x) {
            unsigned short m = 0;
            for (int z = 0; z < Z; ++z) if (vol[(z * Y + y) * X + x] > m) m = vol[(z * Y + y) * X + x];
            CHECK(mz[y * X + x] == m);
        }
    for (int z = 0; z < Z; ++z)
        for (int y = 0; y < Y; ++y) {
            unsigned short m = 0;
            for (int x = 0; x < X; ++x) if (vol[(z * Y + y) * X + x] > m) m = vol[(z * Y + y) * X + x];
            CHECK(mx[z * Y + y] == m);
        }
    const int64_t off_out[3] = {2, 0, 0};
    CHECK(resin_mip_update(mz, my, mx, shape, vol, shape, off_out, RESIN_UINT16) ==
          RESIN_ERROR_INVALID_ARGUMENT);

    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("libresin ok (ABI %d)\n", resin_abi_version());
    return failures ? 1 : 0;
}
