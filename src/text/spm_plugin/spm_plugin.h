#pragma once
// C ABI of the sentencepiece plugin (libmedvlp_spm.so).
//
// Why a plugin: Debian's libsentencepiece embeds and exports its own protobuf-lite 3.14, while
// Debian's LibTorch loads the system libprotobuf 3.21. Linked into one symbol scope they
// interpose each other and the process aborts at start-up or on first use. The plugin is
// loaded with RTLD_LOCAL | RTLD_DEEPBIND so sentencepiece binds to its own copy; only plain C
// types cross the boundary.
#include <cstdint>
#include <stddef.h>
#include <stdint.h>

extern "C" {
/// Returns a handle, or null with a message in err.
void* medvlp_spm_load(const char* model_path, char* err, size_t err_len);
/// Trains from n documents with n_args key/value pairs (args[2i], args[2i+1]); 0 on success.
int medvlp_spm_train(const char* const* docs, size_t n, const char* const* args, size_t n_args, char* err, size_t err_len);
/// Encodes text; writes up to cap ids and the full count to *n; 0 on success.
int medvlp_spm_encode(void* handle, const char* text, int32_t* ids, size_t cap, size_t* n, char* err, size_t err_len);
/// Decodes ids into out (cap bytes, NUL-terminated), full length in *len; 0 on success.
int medvlp_spm_decode(void* handle, const int32_t* ids, size_t n, char* out, size_t cap, size_t* len, char* err, size_t err_len);
/// Vocabulary size and special ids (-1 when undefined).
void medvlp_spm_info(void* handle, int32_t* pieces, int32_t* pad, int32_t* bos, int32_t* eos);
void medvlp_spm_free(void* handle);
}
