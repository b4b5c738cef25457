//! librdkafka's in-process mock cluster behind a small API, for tests of code that does not
//! depend on `rdkafka` itself (e.g. the engine's end-to-end tests): topics, injected
//! request errors, brokers going down. The mock cluster supports transactions.
//!
//! ```
//! use complaintflow_operators::kafka::{KafkaConfig, MockKafka};
//! let mock = MockKafka::new(1).unwrap();
//! mock.create_topic("t", 2).unwrap();
//! let cfg = KafkaConfig::with_brokers(mock.bootstrap_servers());
//! assert_eq!(cfg.partitions("t").unwrap(), vec![0, 1]);
//! ```

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::config::KafkaError;

/// A mock Kafka cluster in this process; it stops when dropped.
pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: i32,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.cluster.bootstrap_servers())
            .finish()
    }
}

/// Requests whose errors can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockRequest {
    /// Produce requests (sinks, replay producer).
    Produce,
    /// Fetch requests (the source).
    Fetch,
    /// EndTxn (transaction commits).
    EndTxn,
}

impl MockKafka {
    /// A cluster of `brokers` brokers (ids 1..=brokers).
    pub fn new(brokers: i32) -> Result<MockKafka, KafkaError> {
        Ok(MockKafka {
            cluster: MockCluster::new(brokers)?,
            brokers,
        })
    }

    /// The bootstrap list for [`KafkaConfig::brokers`](super::KafkaConfig::brokers).
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic, replicated on every broker (at most 3).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        Ok(self
            .cluster
            .create_topic(name, partitions, self.brokers.clamp(1, 3))?)
    }

    /// The next `n` requests of `kind` fail with retriable errors (not-leader, timeouts, a
    /// dropped connection), in turn.
    pub fn fail_next(&self, kind: MockRequest, n: usize) {
        let api = match kind {
            MockRequest::Produce => RDKafkaApiKey::Produce,
            MockRequest::Fetch => RDKafkaApiKey::Fetch,
            MockRequest::EndTxn => RDKafkaApiKey::EndTxn,
        };
        let cycle = match kind {
            MockRequest::EndTxn => [
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            ],
            _ => [
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            ],
        };
        let errors: Vec<RDKafkaRespErr> = cycle.iter().copied().cycle().take(n).collect();
        self.cluster.request_errors(api, &errors);
    }

    /// Takes broker `id` down (its connections fail until [`broker_up`](Self::broker_up)).
    pub fn broker_down(&self, id: i32) -> Result<(), KafkaError> {
        Ok(self.cluster.broker_down(id)?)
    }

    /// Brings broker `id` back.
    pub fn broker_up(&self, id: i32) -> Result<(), KafkaError> {
        Ok(self.cluster.broker_up(id)?)
    }
}
