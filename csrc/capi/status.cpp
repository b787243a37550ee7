#include "csrc/capi/status.h"

#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>

#include "csrc/model/gguf_reader.h"
#include "csrc/model/llama_file.h"
#include "csrc/sampling/sampler.h"
#include "csrc/tokenizer/tokenizer_metadata.h"

namespace edgellama::capi {

namespace {
thread_local std::string g_last_error;
}

const char* last_error() { return g_last_error.c_str(); }

edgellama_status fail(edgellama_status status, const std::string& message) {
    try {
        g_last_error = message;
    } catch (...) {
        g_last_error.clear();  // out of memory for the message itself: the status still says what happened
    }
    return status;
}

edgellama_status status_of_current_exception() {
    // The most specific classes first: GgufError and UnsupportedModelError are invalid_arguments.
    try {
        throw;
    } catch (const tokenizer::UnsupportedTokenizerError& e) {
        return fail(EDGELLAMA_ERR_UNSUPPORTED_MODEL, e.what());
    } catch (const GgufError& e) {
        return fail(EDGELLAMA_ERR_INVALID_MODEL, e.what());
    } catch (const UnsupportedModelError& e) {
        return fail(EDGELLAMA_ERR_UNSUPPORTED_MODEL, e.what());
    } catch (const FileOpenError& e) {
        return fail(EDGELLAMA_ERR_IO, e.what());
    } catch (const ModelOutputError& e) {
        return fail(EDGELLAMA_ERR_MODEL_OUTPUT, e.what());
    } catch (const std::length_error& e) {
        // The core's context overflow (token_batch.cpp); a vector too long to exist is the other kind.
        const bool context = std::strstr(e.what(), "context") != nullptr;
        return fail(context ? EDGELLAMA_ERR_CONTEXT_FULL : EDGELLAMA_ERR_OUT_OF_MEMORY, e.what());
    } catch (const std::bad_alloc&) {
        return fail(EDGELLAMA_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::overflow_error& e) {
        return fail(EDGELLAMA_ERR_OUT_OF_MEMORY, e.what());  // a buffer whose size cannot exist
    } catch (const std::invalid_argument& e) {
        return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, e.what());
    } catch (const std::out_of_range& e) {
        return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, e.what());
    } catch (const std::system_error& e) {
        return fail(EDGELLAMA_ERR_IO, e.what());
    } catch (const std::exception& e) {
        return fail(EDGELLAMA_ERR_INTERNAL, e.what());
    } catch (...) {
        return fail(EDGELLAMA_ERR_INTERNAL, "unknown error");
    }
}

edgellama_status copy_out(std::string_view text, bool terminate, char* buf, size_t buf_size, size_t* size) {
    if (!size) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the size out-parameter is NULL");
    const size_t needed = text.size() + (terminate ? 1 : 0);
    *size = needed;
    if (needed > buf_size) {
        return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "the buffer holds " + std::to_string(buf_size) +
                                                        " bytes; " + std::to_string(needed) + " are needed");
    }
    if (!buf && needed > 0) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the buffer is NULL");
    if (!text.empty()) std::memcpy(buf, text.data(), text.size());
    if (terminate) buf[text.size()] = '\0';
    return EDGELLAMA_OK;
}

}  // namespace edgellama::capi
