# Locate libtorch through the Python environment's torch package, and what find_package(Torch) of a CUDA build
# needs (the toolkit and nvrtc), so that users configure with no -D paths. Anything set explicitly wins.
#
# Facts (torch 2.14.1+cu130, cmake 3.25): find_package(Torch) of a CUDA torch looks for the CUDA toolkit even
# for a CPU-only program; a toolkit without nvrtc (the pip package nvidia-cuda-nvrtc holds it) fails there.

find_package(Python3 COMPONENTS Interpreter QUIET)  # prefers the active virtualenv (Python3_FIND_VIRTUALENV)
if(Python3_FOUND)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
      "import glob, os, torch; site = os.path.dirname(os.path.dirname(torch.__file__)); print(torch.utils.cmake_prefix_path); print(torch.version.cuda or ''); print(';'.join(sorted(glob.glob(os.path.join(site, 'nvidia', '*', 'lib', 'libnvrtc.so.*')))))"
    OUTPUT_VARIABLE _skipgan_torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _skipgan_torch_rc
    ERROR_QUIET)
endif()

if(Python3_FOUND AND _skipgan_torch_rc EQUAL 0)
  string(REPLACE "\n" ";" _skipgan_torch_info "${_skipgan_torch_info}")
  list(LENGTH _skipgan_torch_info _n)
  list(GET _skipgan_torch_info 0 _skipgan_torch_prefix)
  set(_skipgan_torch_cuda "")
  set(_skipgan_nvrtc "")
  if(_n GREATER 1)
    list(GET _skipgan_torch_info 1 _skipgan_torch_cuda)
  endif()
  if(_n GREATER 2)
    list(GET _skipgan_torch_info 2 _skipgan_nvrtc)
  endif()
  if(NOT Torch_DIR)
    list(APPEND CMAKE_PREFIX_PATH "${_skipgan_torch_prefix}")
    message(STATUS "skipgan: torch from ${Python3_EXECUTABLE} (${_skipgan_torch_prefix})")
  endif()
  if(_skipgan_torch_cuda)
    if(NOT CUDA_TOOLKIT_ROOT_DIR)
      if(DEFINED ENV{CUDA_HOME} AND EXISTS "$ENV{CUDA_HOME}/bin/nvcc")
        set(CUDA_TOOLKIT_ROOT_DIR "$ENV{CUDA_HOME}")
      elseif(EXISTS /usr/local/cuda/bin/nvcc)
        set(CUDA_TOOLKIT_ROOT_DIR /usr/local/cuda)
      else()
        message(FATAL_ERROR "torch is a CUDA ${_skipgan_torch_cuda} build, whose CMake config needs the CUDA "
                            "toolkit; install it or set CUDA_HOME (or -DCUDA_TOOLKIT_ROOT_DIR)")
      endif()
    endif()
    if(NOT CMAKE_CUDA_COMPILER)
      set(CMAKE_CUDA_COMPILER "${CUDA_TOOLKIT_ROOT_DIR}/bin/nvcc")
    endif()
    if(NOT CUDA_nvrtc_LIBRARY AND _skipgan_nvrtc)
      list(GET _skipgan_nvrtc 0 _first_nvrtc)
      set(CUDA_nvrtc_LIBRARY "${_first_nvrtc}")
    endif()
    message(STATUS "skipgan: CUDA toolkit ${CUDA_TOOLKIT_ROOT_DIR}, nvrtc ${CUDA_nvrtc_LIBRARY}")
  endif()
endif()
