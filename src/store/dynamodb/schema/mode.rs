//! Which kind of table `streamguard init` found, as far as DescribeTable
//! tells: single-region, or a global table (version 2019.11.21) with its
//! replicas and `MultiRegionConsistency`. docs/regions.md says which mode
//! streamguard supports and how an operator picks.

use std::fmt;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{MultiRegionConsistency, TableDescription};

/// A table's multi-region mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableMode {
    /// No replicas: exact.
    SingleRegion,
    /// Replicas with eventual consistency (MREC, the default): exact only
    /// with one home region per account.
    Eventual { regions: Vec<String> },
    /// Replicas with strong consistency (MRSC): not supported.
    Strong { regions: Vec<String> },
    /// Replicas with a consistency this SDK does not know.
    Other {
        regions: Vec<String>,
        consistency: String,
    },
}

impl TableMode {
    pub fn of(table: &TableDescription) -> Self {
        let mut regions: Vec<String> = table
            .replicas()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_owned))
            .collect();
        if regions.is_empty() {
            return Self::SingleRegion;
        }
        regions.sort_unstable();
        match table.multi_region_consistency() {
            None | Some(MultiRegionConsistency::Eventual) => Self::Eventual { regions },
            Some(MultiRegionConsistency::Strong) => Self::Strong { regions },
            Some(other) => Self::Other {
                regions,
                consistency: other.as_str().to_owned(),
            },
        }
    }
}

impl fmt::Display for TableMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SingleRegion => f.write_str("single-region"),
            Self::Eventual { regions } => write!(
                f,
                "global table, eventual consistency (MREC), replicas in {}",
                regions.join(", ")
            ),
            Self::Strong { regions } => write!(
                f,
                "global table, strong consistency (MRSC), replicas in {}",
                regions.join(", ")
            ),
            Self::Other {
                regions,
                consistency,
            } => write!(
                f,
                "global table, consistency {consistency}, replicas in {}",
                regions.join(", ")
            ),
        }
    }
}

/// Logs the table's mode and what streamguard promises in it; a table
/// that cannot be described is reported as unknown (init goes on).
pub async fn report(client: &Client, table: &str) -> Option<TableMode> {
    let described = client.describe_table().table_name(table).send().await;
    let Some(description) = described.ok().and_then(|d| d.table) else {
        tracing::warn!(
            table,
            "could not tell the DynamoDB table's multi-region mode"
        );
        return None;
    };
    let mode = TableMode::of(&description);
    match &mode {
        TableMode::SingleRegion => {
            tracing::info!(table, mode = %mode, "DynamoDB table mode: single-region, exact");
        }
        TableMode::Eventual { .. } => tracing::warn!(
            table,
            mode = %mode,
            "DynamoDB table mode: exact only while each account has one home region \
             (docs/regions.md)"
        ),
        TableMode::Strong { .. } | TableMode::Other { .. } => tracing::warn!(
            table,
            mode = %mode,
            "DynamoDB table mode: not supported, streamguard needs transactions and TTL \
             (docs/regions.md)"
        ),
    }
    Some(mode)
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::ReplicaDescription;

    use super::*;

    fn table(regions: &[&str], consistency: Option<MultiRegionConsistency>) -> TableDescription {
        let mut t = TableDescription::builder();
        for r in regions {
            t = t.replicas(ReplicaDescription::builder().region_name(*r).build());
        }
        t.set_multi_region_consistency(consistency).build()
    }

    #[test]
    fn replicas_and_consistency_name_the_mode() {
        assert_eq!(
            TableMode::of(&table(&[], None)).to_string(),
            "single-region"
        );
        let mrec = TableMode::of(&table(&["eu-west-1", "us-east-1"], None));
        assert_eq!(
            mrec.to_string(),
            "global table, eventual consistency (MREC), replicas in eu-west-1, us-east-1"
        );
        let mrsc = TableMode::of(&table(
            &["us-east-1", "us-east-2", "us-west-2"],
            Some(MultiRegionConsistency::Strong),
        ));
        assert!(matches!(mrsc, TableMode::Strong { ref regions } if regions.len() == 3));
        assert!(mrsc.to_string().contains("(MRSC)"));
        let eventual = table(&["us-east-1"], Some(MultiRegionConsistency::Eventual));
        assert!(matches!(
            TableMode::of(&eventual),
            TableMode::Eventual { .. }
        ));
    }
}
