//! `guest-images`: builds the lab's guest kernels, modules and initramfs from
//! Debian packages into a content-addressed cache (`guest_images::cli`).

use clap::Parser;
use guest_images::cli::{self, ImagesArgs};

#[derive(Parser, Debug)]
#[command(
    name = "guest-images",
    version,
    about = "Guest kernels and initramfs for the virtio-net lab, from Debian packages"
)]
struct Cli {
    #[command(flatten)]
    images: ImagesArgs,
}

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(cli.images.log_filter()),
    )
    .format_timestamp(None)
    .init();
    if let Err(e) = cli::run(cli.images) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
