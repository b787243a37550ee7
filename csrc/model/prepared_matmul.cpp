#include "csrc/model/prepared_matmul.h"

#include <stdexcept>
#include <string>

namespace edgellama {

PreparedMatmul::PreparedMatmul(int32_t type, const uint8_t* rows, int64_t n_rows, int64_t cols, bool row_groups,
                               int n_threads, ActPrecision activations)
    : w_(make_weight_matrix(rows, type, n_rows, cols)), pool_(n_threads), act_(activations) {
    if (row_groups) {
        groups_ = repack_matrix(pool_, w_, /*release_file_pages=*/false);
        if (!groups_) {
            throw std::invalid_argument(std::string("no row-group kernel for ") + w_.traits->name + " in this build");
        }
    }
}

void PreparedMatmul::run(const float* x, int64_t n_tokens, float* y) {
    matmul(pool_, act_, w_, x, w_.cols, n_tokens, y, w_.rows);
}

}  // namespace edgellama
