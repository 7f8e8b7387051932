//! The secrets dir: `<secrets_dir>/<stack>.env`, the host-side file that plays the part of a
//! compose project's `.env`. Values are wrapped in `Secret` as soon as they are read.
