//! Debezium JSON of transaction metadata (`provide.transaction.metadata`): the `transaction`
//! block of data events, and the key and value of `BEGIN`/`END` events on the transaction
//! topic, with Kafka Connect's `JsonConverter` schemas when `schemas_enable` is on.

use super::*;
use crate::transactions::{TransactionBlock, TransactionEvent};

/// Connect schema of the transaction topic's key (`TransactionMetadataKey`).
const TRANSACTION_KEY_SCHEMA: &[u8] = b"{\"type\":\"struct\",\"fields\":[\
    {\"type\":\"string\",\"optional\":false,\"field\":\"id\"}],\"optional\":false,\
    \"name\":\"io.debezium.connector.common.TransactionMetadataKey\",\"version\":1}";

/// Connect schema of the transaction topic's value (`TransactionMetadataValue`).
const TRANSACTION_VALUE_SCHEMA: &[u8] = b"{\"type\":\"struct\",\"fields\":[\
    {\"type\":\"string\",\"optional\":false,\"field\":\"status\"},\
    {\"type\":\"string\",\"optional\":false,\"field\":\"id\"},\
    {\"type\":\"int64\",\"optional\":true,\"field\":\"event_count\"},\
    {\"type\":\"array\",\"items\":{\"type\":\"struct\",\"fields\":[\
    {\"type\":\"string\",\"optional\":false,\"field\":\"data_collection\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"event_count\"}],\
    \"optional\":true,\"name\":\"event.collection\",\"version\":1},\
    \"optional\":true,\"field\":\"data_collections\"},\
    {\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"}],\"optional\":false,\
    \"name\":\"io.debezium.connector.common.TransactionMetadataValue\",\"version\":1}";

/// The `transaction` member's value: the block, or `null` outside transaction metadata.
pub(super) fn write_transaction_block(out: &mut Vec<u8>, tx: Option<&TransactionBlock>) {
    match tx {
        None => out.extend_from_slice(b"null"),
        Some(tx) => {
            out.extend_from_slice(b"{\"id\":");
            write_str(out, &tx.id);
            out.extend_from_slice(b",\"total_order\":");
            write_int(out, tx.total_order);
            out.extend_from_slice(b",\"data_collection_order\":");
            write_int(out, tx.data_collection_order);
            out.push(b'}');
        }
    }
}

impl JsonEncoder {
    /// Writes the key of a transaction event, `{"id":…}`, into `out` (cleared first).
    pub fn encode_transaction_key(&self, id: &str, out: &mut Vec<u8>) {
        out.clear();
        let schemas = self.opts.schemas_enable;
        if schemas {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(TRANSACTION_KEY_SCHEMA);
            out.extend_from_slice(b",\"payload\":");
        }
        out.extend_from_slice(b"{\"id\":");
        write_str(out, id);
        out.push(b'}');
        if schemas {
            out.push(b'}');
        }
    }

    /// Writes the value of a `BEGIN` or `END` event into `out` (cleared first).
    pub fn encode_transaction_value(&self, ev: &TransactionEvent, out: &mut Vec<u8>) {
        out.clear();
        let schemas = self.opts.schemas_enable;
        if schemas {
            out.extend_from_slice(b"{\"schema\":");
            out.extend_from_slice(TRANSACTION_VALUE_SCHEMA);
            out.extend_from_slice(b",\"payload\":");
        }
        out.extend_from_slice(b"{\"status\":\"");
        out.extend_from_slice(ev.status.as_str().as_bytes());
        out.extend_from_slice(b"\",\"id\":");
        write_str(out, &ev.id);
        out.extend_from_slice(b",\"event_count\":");
        write_opt_int(out, ev.event_count);
        out.extend_from_slice(b",\"data_collections\":");
        match &ev.data_collections {
            None => out.extend_from_slice(b"null"),
            Some(tables) => {
                out.push(b'[');
                for (i, (name, count)) in tables.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"data_collection\":");
                    write_str(out, name);
                    out.extend_from_slice(b",\"event_count\":");
                    write_int(out, *count);
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"ts_ms\":");
        write_int(out, ev.ts_ms);
        out.push(b'}');
        if schemas {
            out.push(b'}');
        }
    }
}
