// Error handling of the C ABI inside a level module: every entry point runs its body through
// guarded(), which turns the core's exceptions into an edgellama_status and keeps the message as
// this thread's last error. Nothing thrown crosses the C boundary.
#pragma once

#include <string>
#include <string_view>

#include "include/edgellama.h"

namespace edgellama::capi {

// This thread's last error message (the module's; the front copies it after a failing call).
const char* last_error();
edgellama_status fail(edgellama_status status, const std::string& message);
// Maps the exception being handled (call inside a catch block) to its status.
edgellama_status status_of_current_exception();

template <class Body>
edgellama_status guarded(Body&& body) noexcept {
    try {
        body();
        return EDGELLAMA_OK;
    } catch (...) {
        return status_of_current_exception();
    }
}

// Writes text (and a NUL when terminate) to a caller buffer of buf_size bytes; *size gets the bytes
// needed. EDGELLAMA_ERR_BUFFER_TOO_SMALL when they do not fit (nothing written then).
edgellama_status copy_out(std::string_view text, bool terminate, char* buf, size_t buf_size, size_t* size);

}  // namespace edgellama::capi
