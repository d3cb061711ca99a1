//! Which mode a database serves: the server's label (`real` or `sandbox`), written by the first
//! node to start on it, so a node of the other mode can be refused (the server's mode_marker
//! says why). Opaque here.

use super::{pg_error, PgBackend};
use crate::StoreError;

/// What a database said when a node claimed it for a mode.
#[derive(Debug, PartialEq, Eq)]
pub enum ModeClaim {
    /// It serves that mode: it did already, or it had no label and now has this one.
    Ours,
    /// It serves another mode: this one.
    Other(String),
    /// It has no label but holds bindings (written before labels): left unlabelled.
    UnlabelledData,
}

impl PgBackend {
    /// Claims the database for `mode`. One without a label takes it, unless it holds bindings
    /// and `only_if_empty` (then it says so and stays unlabelled). Nodes starting at once agree:
    /// the first label written is everyone's.
    pub async fn claim_mode(
        &self,
        mode: &str,
        only_if_empty: bool,
    ) -> Result<ModeClaim, StoreError> {
        self.run(move |mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.batch_execute("LOCK TABLE wxlogin_mode IN EXCLUSIVE MODE")
                .await
                .map_err(pg_error)?;
            let labelled = tx
                .query_opt("SELECT mode FROM wxlogin_mode", &[])
                .await
                .map_err(pg_error)?;
            if let Some(row) = labelled {
                let label: String = row.get(0);
                return Ok(if label == mode {
                    ModeClaim::Ours
                } else {
                    ModeClaim::Other(label)
                });
            }
            if only_if_empty {
                let holds: bool = tx
                    .query_one("SELECT EXISTS (SELECT 1 FROM bindings)", &[])
                    .await
                    .map_err(pg_error)?
                    .get(0);
                if holds {
                    return Ok(ModeClaim::UnlabelledData);
                }
            }
            tx.execute("INSERT INTO wxlogin_mode (mode) VALUES ($1)", &[&mode])
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(ModeClaim::Ours)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;
    use crate::{Backend, OpenId, PgSettings, Phone};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(has_postgres), ignore = "needs PostgreSQL's initdb")]
    async fn a_database_keeps_the_first_mode_claimed_and_unlabelled_data_is_not_taken_unasked() {
        let server = TestServer::start();
        let open = |url| async move {
            let settings = PgSettings {
                url,
                pool_size: 2,
                ca_file: None,
            };
            PgBackend::open(&settings).await.unwrap()
        };
        let db = open(server.new_database().await).await;
        assert_eq!(db.claim_mode("real", true).await.unwrap(), ModeClaim::Ours);
        assert_eq!(db.claim_mode("real", true).await.unwrap(), ModeClaim::Ours);
        assert_eq!(
            db.claim_mode("sandbox", true).await.unwrap(),
            ModeClaim::Other("real".into())
        );

        // Bindings and no label (a database from before labels).
        let old = open(server.new_database().await).await;
        let alice = OpenId::parse("alice").unwrap();
        old.bind(&alice, &Phone::parse("13800000001").unwrap(), 0)
            .await
            .unwrap();
        assert_eq!(
            old.claim_mode("sandbox", true).await.unwrap(),
            ModeClaim::UnlabelledData
        );
        assert_eq!(
            old.claim_mode("real", false).await.unwrap(),
            ModeClaim::Ours
        );
        assert_eq!(
            old.claim_mode("sandbox", true).await.unwrap(),
            ModeClaim::Other("real".into())
        );
    }
}
