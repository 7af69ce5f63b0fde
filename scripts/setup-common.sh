# Shared by scripts/run.sh and scripts/test.sh (sourced): what the build needs from the machine,
# checked by the exact file or command the build uses, and installing it with apt.

# redis-module's build script runs bindgen, which dlopens libclang itself (clang-sys): a file
# named libclang.so, libclang-<version>.so, or either with a .<n> suffix, in LIBCLANG_PATH when
# it is set, else in the system's library directories. libclang-cpp.so (installed with LLVM,
# without libclang) does not count: clang-sys skips it.
have_libclang() {
  local dirs=(/usr/lib /usr/lib64 /usr/local/lib)
  [ -n "${LIBCLANG_PATH:-}" ] && dirs=("$LIBCLANG_PATH")
  find "${dirs[@]}" -maxdepth 3 \( -name 'libclang.so*' -o -name 'libclang-[0-9]*.so*' \) \
    2>/dev/null | grep -q .
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE...: installs quietly; fails like apt-get does.
apt_install() {
  as_root apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
