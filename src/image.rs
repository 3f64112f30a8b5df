//! `drover image import`: puts an OCI image archive into a node's containerd (CRI
//! namespace `k8s.io`), the same way the agent imports its pause image, so pods can run
//! images that no registry serves (`imagePullPolicy: Never` or `IfNotPresent`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use drover_node::containerd::ContainerdPaths;

/// `drover image` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image archive (a tar of oci-layout, index.json, blobs) into the
    /// node's containerd.
    Import(ImportArgs),
}

/// `drover image import`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The archive.
    pub archive: PathBuf,
    /// The agent's data dir (its containerd socket is under it). Default:
    /// $XDG_DATA_HOME/drover/node.
    #[arg(
        long,
        env = "DROVER_NODE_DATA_DIR",
        conflicts_with = "containerd_socket"
    )]
    pub data_dir: Option<PathBuf>,
    /// The containerd socket to import into, instead of the agent's.
    #[arg(long, value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// The `ctr` binary.
    #[arg(long, default_value = "ctr")]
    pub ctr: PathBuf,
}

/// Runs an `image` verb.
pub async fn run(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Import(args) => {
            let socket = match (args.containerd_socket, args.data_dir) {
                (Some(s), _) => s,
                (None, Some(d)) => ContainerdPaths::new(d).socket(),
                (None, None) => {
                    ContainerdPaths::new(crate::agent::default_node_data_dir()?).socket()
                }
            };
            anyhow::ensure!(
                args.archive.is_file(),
                "{} is not a file",
                args.archive.display()
            );
            drover_node::image::import(&args.ctr, &socket, &args.archive)
                .await
                .with_context(|| {
                    format!(
                        "importing {} into the containerd at {}",
                        args.archive.display(),
                        socket.display()
                    )
                })?;
            eprintln!("drover: imported {}", args.archive.display());
            Ok(())
        }
    }
}
