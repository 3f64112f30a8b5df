//! `drover events [-n NS | -A] [-w]`: the namespace's events, oldest first, as
//! `LAST SEEN  TYPE  REASON  OBJECT  MESSAGE` (the server's Event table, wide columns left
//! out); `-w` then prints each new or updated event as it happens.

use anyhow::{Context, Result};
use kube::api::ListParams;
use serde_json::Value;

use super::get::{fetch_table, print_row};
use super::print::{self, TableLayout};
use super::watch::{self, Change};
use super::{ClientArgs, Ctx, Resource, str_at};

/// Arguments of `drover events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Events of every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// After printing, follow new events.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Runs `drover events`.
pub async fn run(args: EventsArgs) -> Result<()> {
    let ctx = Ctx::connect(&args.client).await?;
    let resource = ctx
        .resources()
        .await?
        .by_api_version_kind("v1", "Event")?
        .clone();
    let namespace = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let layout = TableLayout {
        wide: false,
        namespace_column: args.all_namespaces,
        name_prefix: None,
    };
    let mut table = fetch_table(
        &ctx,
        &resource,
        namespace,
        None,
        &ListParams::default(),
        true,
    )
    .await
    .context("listing events")?;
    sort_rows(&mut table);
    let (header, rows) = print::table_cells(&table, &layout);
    let mut header_printed = false;
    if rows.is_empty() {
        if !args.watch {
            match namespace {
                Some(ns) => eprintln!("No events found in {ns} namespace."),
                None => eprintln!("No events found."),
            }
        }
    } else {
        let mut lines = vec![header.clone()];
        lines.extend(rows);
        print!(
            "{}",
            print::tabwrite(&lines, print::GET_MIN_WIDTH, print::GET_PADDING)
        );
        header_printed = true;
    }
    if !args.watch {
        return Ok(());
    }
    let rv = str_at(&table, "/metadata/resourceVersion").to_string();
    follow(
        &ctx,
        &resource,
        namespace,
        &layout,
        header,
        header_printed,
        rv,
    )
    .await
}

async fn follow(
    ctx: &Ctx,
    resource: &Resource,
    namespace: Option<&str>,
    layout: &TableLayout,
    header: Vec<String>,
    mut header_printed: bool,
    rv: String,
) -> Result<()> {
    let api = ctx.api(resource, namespace);
    watch::follow(&api, &watch::params(None, None), rv, async |change, obj| {
        if change == Change::Deleted {
            return Ok(());
        }
        let ns = obj.metadata.namespace.clone();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let table = match fetch_table(
            ctx,
            resource,
            ns.as_deref(),
            Some(&name),
            &ListParams::default(),
            false,
        )
        .await
        {
            Ok(t) => t,
            // Expired or deleted before we looked: nothing to show.
            Err(e) if super::server_status(&e).is_some_and(|s| s.code == 404) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (_, rows) = print::table_cells(&table, layout);
        for row in rows {
            print_row(&header, row, &mut header_printed);
        }
        Ok(())
    })
    .await
}

/// When an event last happened: `series.lastObservedTime`, `lastTimestamp`, `eventTime`,
/// `firstTimestamp`, else its creation. RFC 3339 in UTC compares as text.
pub fn last_seen(event: &Value) -> &str {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| str_at(event, p))
    .find(|s| !s.is_empty())
    .unwrap_or("")
}

/// Orders a Table of events (rows with whole objects) oldest first, as kubectl events does.
fn sort_rows(table: &mut Value) {
    if let Some(Value::Array(rows)) = table.get_mut("rows") {
        rows.sort_by(|a, b| {
            let (a, b) = (
                a.get("object").unwrap_or(&Value::Null),
                b.get("object").unwrap_or(&Value::Null),
            );
            parse_time(last_seen(a))
                .cmp(&parse_time(last_seen(b)))
                .then_with(|| last_seen(a).cmp(last_seen(b)))
        });
    }
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_sort_by_the_last_time_an_event_was_seen() {
        let mut table = json!({"rows": [
            {"cells": ["b"], "object": {"lastTimestamp": "2026-01-01T00:00:05Z"}},
            {"cells": ["c"], "object": {"series": {"lastObservedTime": "2026-01-01T00:00:09.000000Z"}, "eventTime": "2026-01-01T00:00:01.000000Z"}},
            {"cells": ["a"], "object": {"metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"}}},
            {"cells": ["odd"]},
        ]});
        sort_rows(&mut table);
        let order: Vec<&str> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["cells"][0].as_str().unwrap())
            .collect();
        assert_eq!(order, ["odd", "a", "b", "c"]);
    }
}
