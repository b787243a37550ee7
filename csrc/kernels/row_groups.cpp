#include "csrc/kernels/row_groups.h"

#include <initializer_list>

namespace edgellama {

const RowGroupKernel* find_row_group_kernel(int32_t type_id) {
    for (auto find : {find_row_group_kernel_32_avx512, find_row_group_kernel_k_avx512, find_row_group_kernel_32_avx2,
                      find_row_group_kernel_k_avx2, find_row_group_kernel_32_neon,
                      find_row_group_kernel_k_neon}) {
        if (const RowGroupKernel* k = find(type_id)) return k;
    }
    return nullptr;
}

}  // namespace edgellama
