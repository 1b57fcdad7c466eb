#include "host_store.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "error.hpp"

namespace ferry {

HostStore::HostStore(Device &device, std::size_t bytes) : device_(device), bytes_(bytes) {
    base_ = static_cast<std::byte *>(device_.alloc_pinned(bytes));
}

HostStore::~HostStore() {
    make_writable();  // before the backend unpins and frees it
    device_.free_pinned(base_, bytes_);
}

void HostStore::make_writable() noexcept { mprotect(base_, bytes_, PROT_READ | PROT_WRITE); }

void HostStore::protect_read_only(std::size_t offset, std::size_t bytes) {
    if (bytes == 0) return;
    const int rc = mprotect(base_ + offset, bytes, PROT_READ);
    FERRY_EXPECTS(rc == 0, FERRY_ERROR_INTERNAL,
            "mprotect of " + std::to_string(bytes) + " host bytes at offset " +
                std::to_string(offset) + " failed: " + std::strerror(errno));
}

std::size_t HostStore::page_size() {
    static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return size;
}

}  // namespace ferry
