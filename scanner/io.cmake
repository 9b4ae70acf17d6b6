# skipgan_scanner_io: everything of the scanner that reads untrusted bytes (image decoders, the stdin path reader,
# the export-metadata parser) and the torch-free map code (regions.cpp, the PNG writer image_encode.cpp),
# with no libtorch. One definition, used by the scanner (scanner/CMakeLists.txt) and by
# the sanitizer/fuzzer build (scanner/fuzz/), so the fuzzed code is the shipped code.
find_package(PNG REQUIRED)
find_package(TIFF 4.5 REQUIRED)  # 4.5: TIFFOpenOptions (per-handle error handlers, allocation cap)
find_package(nlohmann_json 3 REQUIRED)
add_library(skipgan_scanner_io STATIC ${CMAKE_CURRENT_LIST_DIR}/image_decode.cpp
            ${CMAKE_CURRENT_LIST_DIR}/export_metadata.cpp ${CMAKE_CURRENT_LIST_DIR}/path_lines.cpp
            ${CMAKE_CURRENT_LIST_DIR}/regions.cpp ${CMAKE_CURRENT_LIST_DIR}/image_encode.cpp)
target_include_directories(skipgan_scanner_io PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(skipgan_scanner_io PUBLIC nlohmann_json::nlohmann_json PRIVATE PNG::PNG TIFF::TIFF)
target_compile_options(skipgan_scanner_io PRIVATE -Wall -Wextra -Wno-unused-parameter)
set_target_properties(skipgan_scanner_io PROPERTIES POSITION_INDEPENDENT_CODE ON)
