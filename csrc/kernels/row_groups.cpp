#include "csrc/kernels/row_groups.h"

namespace edgellama {

const RowGroupKernel* find_row_group_kernel(int32_t type_id) {
    if (const RowGroupKernel* k = find_row_group_kernel_32(type_id)) return k;
    return find_row_group_kernel_k(type_id);
}

}  // namespace edgellama
