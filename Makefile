# Thin wrapper around CMake (CMakeLists.txt is the source of truth).
BUILD_DIR  ?= build
ASAN_DIR   ?= build-asan
BUILD_TYPE ?= Release
CMAKE_ARGS ?=
JOBS       ?= $(shell nproc)
GENERATOR  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
DEMO_PROMPT ?= Tell me about the sea.

.PHONY: all build test run asan clean deps help fuzz

all: build

help:
	@echo "make          release build into $(BUILD_DIR)/ (installs missing dependency packages first)"
	@echo "make test     build and run every test (ctest); CPU only unless a GPU is present"
	@echo "make run      build and run glmrun on the bundled tiny model"
	@echo "make asan     AddressSanitizer + UBSan build in $(ASAN_DIR)/ and its test run"
	@echo "make fuzz     build the libFuzzer targets with clang (build-fuzz/)"
	@echo "make clean    remove build directories"

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/build.ninja $(BUILD_DIR)/Makefile: | deps
	cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: deps
	@test -f $(BUILD_DIR)/CMakeCache.txt || cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

run: build
	./$(BUILD_DIR)/glmrun -p "$(DEMO_PROMPT)"

asan: deps
	@test -f $(ASAN_DIR)/CMakeCache.txt || cmake -S . -B $(ASAN_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DGLMRUN_SANITIZE=ON -DGLMRUN_CUDA=OFF $(CMAKE_ARGS)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS)

fuzz: deps
	@test -f build-fuzz/CMakeCache.txt || CC=clang CXX=clang++ cmake -S . -B build-fuzz $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGLMRUN_FUZZ=ON -DGLMRUN_CUDA=OFF -DGLMRUN_TESTS=OFF "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address,undefined"
	cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) build-fuzz
