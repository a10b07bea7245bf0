// file:///root — objects are files under one directory tree; see README.md in this directory
// for the layout. Nothing outside the root is reachable: every path is resolved component by
// component from the root's descriptor without following symbolic links.
#pragma once

#include <memory>

#include "mikcar/storage/backend.h"
#include "mikcar/uri.h"

namespace mikcar::storage {

Result<std::unique_ptr<StorageBackend>> OpenFileStorageBackend(const Uri& uri);

}  // namespace mikcar::storage
