#include "medvlp/io/files.h"

#include <cctype>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "medvlp/core/error.h"

namespace medvlp::io {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MEDVLP_CHECK(in, path, ": cannot open for reading (", std::strerror(errno), ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  MEDVLP_CHECK(!in.bad(), path, ": read failed");
  return buffer.str();
}

void write_file_synced(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MEDVLP_CHECK(fd >= 0, path, ": cannot open for writing (", std::strerror(errno), ")");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error(path + ": write failed (" + std::strerror(err) + ")");
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  MEDVLP_CHECK(synced, path, ": fsync failed (", std::strerror(err), ")");
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  write_file_synced(tmp, bytes);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": rename failed (" + std::strerror(err) + ")");
  }
  const auto slash = path.find_last_of('/');
  sync_directory(slash == std::string::npos ? "." : path.substr(0, slash));
}

void make_directories(const std::string& path) {
  std::string built;
  for (size_t i = 0; i <= path.size(); ++i) {
    if ((i == path.size() || path[i] == '/') && !built.empty() &&
        ::mkdir(built.c_str(), 0755) != 0 && errno != EEXIST)
      throw Error(built + ": cannot create directory (" + std::strerror(errno) + ")");
    if (i < path.size()) built += path[i];
  }
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // some filesystems refuse directory fds; the rename itself is still atomic
  ::fsync(fd);
  ::close(fd);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool has_suffix(const std::string& path, const std::string& suffix) {
  if (path.size() < suffix.size()) return false;
  const size_t off = path.size() - suffix.size();
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(path[off + i])) != std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

}  // namespace medvlp::io
