//! `sd download`: a Hub model into the Hugging Face cache, printing where it is.

use anyhow::Result;

/// Arguments of `sd download`.
#[derive(clap::Args)]
pub struct Args {
    /// Hub id (`owner/name`): a diffusers pipeline, a diffusers model (ControlNet) or a
    /// repository of Core ML packages.
    id: String,
    /// Branch, tag or commit.
    #[arg(long)]
    revision: Option<String>,
    /// A folder or file of the repository (`original/packages`,
    /// `v1-5-pruned-emaonly.safetensors`) or a diffusers weight variant (`fp16`).
    #[arg(long)]
    variant: Option<String>,
}

/// Runs `sd download`: the path to load goes to stdout.
pub fn run(a: Args) -> Result<()> {
    match crate::hub_fetch::localize(&a.id, a.revision.as_deref(), a.variant.as_deref())? {
        crate::hub_fetch::Local::Hub(f) => {
            eprintln!(
                "{} ({:?}) at commit {}: {} file(s) downloaded",
                f.repo, f.kind, f.commit, f.downloaded
            );
            println!("{}", f.path.display());
        }
        crate::hub_fetch::Local::Path(p) => {
            anyhow::bail!(
                "{} is a local path: there is nothing to download",
                p.display()
            )
        }
    }
    Ok(())
}
