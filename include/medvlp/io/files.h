#pragma once
// Durable file helpers: what a checkpoint needs so that a crash never leaves a torn file.

#include <string>

namespace medvlp::io {

/// Reads a whole file; medvlp::Error naming the path when it cannot.
std::string read_file(const std::string& path);
/// Writes `bytes` to `path` and fsyncs it (no rename: callers choose the atomic step).
void write_file_synced(const std::string& path, const std::string& bytes);
/// Writes to "<path>.tmp", fsyncs, renames over `path`: readers see the old or the new file, never half.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// True when `path` names an existing file or folder.
bool path_exists(const std::string& path);
/// True when `path` names an existing folder.
bool is_directory(const std::string& path);
/// True when `path` ends with `suffix`, ignoring ASCII case (".nii.gz", ".DCM").
bool has_suffix(const std::string& path, const std::string& suffix);
/// Creates `path` and any missing parents (mkdir -p); medvlp::Error naming the folder that failed.
void make_directories(const std::string& path);
/// fsync on a directory, so a rename inside it survives a power loss.
void sync_directory(const std::string& path);

}  // namespace medvlp::io
