//! `drover members [-o wide|json]`: the control plane's view of the gossip membership, as
//! `serf members` prints it: `NAME  ADDRESS  STATUS  POD-CIDR  ZONE` (wide adds the fence
//! timeout and API address). Read from the gateway's `/drover/members`, so it needs only the
//! kubeconfig, like every other verb.

use anyhow::{Context, Result};
use bus_schema::members::{MEMBERS_PATH, MembersView};

use super::print::tabwrite;
use super::{ClientArgs, Ctx};

/// Arguments of `drover members`.
#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format: wide (more columns) or json.
    #[arg(short = 'o', long, value_parser = ["wide", "json"])]
    pub output: Option<String>,
}

/// Runs `drover members`.
pub async fn run(args: MembersArgs) -> Result<()> {
    let ctx = Ctx::connect(&args.client).await?;
    let request = http::Request::get(MEMBERS_PATH)
        .body(Vec::new())
        .context("building the request")?;
    let view: MembersView = ctx
        .client
        .request(request)
        .await
        .context("reading the membership view")?;
    match args.output.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&view)?),
        other => print!("{}", render(&view, other == Some("wide"))),
    }
    Ok(())
}

/// The table (pure, for tests).
pub fn render(view: &MembersView, wide: bool) -> String {
    let mut header: Vec<String> = ["NAME", "ADDRESS", "STATUS", "POD-CIDR", "ZONE"]
        .map(String::from)
        .to_vec();
    if wide {
        header.extend(["FENCE-TIMEOUT", "API"].map(String::from));
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let mut lines = vec![header];
    for m in &view.members {
        let mut row = vec![
            m.name.clone(),
            m.address.clone(),
            m.status.clone(),
            dash(&m.pod_cidr),
            dash(&m.zone),
        ];
        if wide {
            row.push(if m.fence_timeout_ms == 0 {
                "<none>".into()
            } else {
                format!("{}ms", m.fence_timeout_ms)
            });
            row.push(dash(m.api.as_deref().unwrap_or("")));
        }
        lines.push(row);
    }
    tabwrite(&lines, 0, 3)
}

#[cfg(test)]
mod tests {
    use bus_schema::members::{MemberInfo, MembersView};

    #[test]
    fn members_print_like_serf_members() {
        let view = MembersView {
            observer: "cp".into(),
            members: vec![
                MemberInfo {
                    name: "cp".into(),
                    address: "192.168.200.1:7946".into(),
                    status: "alive".into(),
                    api: Some("192.168.200.1:6443".into()),
                    ..Default::default()
                },
                MemberInfo {
                    name: "node-a".into(),
                    address: "192.168.200.11:7946".into(),
                    status: "down".into(),
                    pod_cidr: "10.244.1.0/24".into(),
                    zone: "zone-a".into(),
                    fence_timeout_ms: 5000,
                    ..Default::default()
                },
            ],
        };
        let text = super::render(&view, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[2].split_whitespace().eq([
                "node-a",
                "192.168.200.11:7946",
                "down",
                "10.244.1.0/24",
                "zone-a"
            ]),
            "{text}"
        );
        assert!(lines[1].contains("<none>"), "{text}");
        let wide = super::render(&view, true);
        assert!(wide.lines().nth(2).unwrap().contains("5000ms"), "{wide}");
    }
}
