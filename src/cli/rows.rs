//! The import file formats, shared by `oneid import` and `oneid gen`.
//!
//! CSV: a header line `doc_type,number,msisdn,carrier,province,kind,channel,strict,unit`
//! then one card per line; no quoting (no field may contain a comma or quote).
//! The `unit` column (an IoT card's responsible unit, by unified social
//! credit code; empty for personal cards) may be left out entirely.
//! JSON Lines: one object per line with the same field names.
//! `doc_type` is a proto name (RESIDENT_ID, PASSPORT, ...), `kind` is
//! personal|iot, `channel` own_hall|agent|online, `strict` true|false.

use serde::{Deserialize, Serialize};

use crate::api::convert;
use crate::pb;

pub const CSV_HEADER: &str = "doc_type,number,msisdn,carrier,province,kind,channel,strict,unit";
/// The header of files without the `unit` column (personal cards only).
pub const CSV_HEADER_PERSONAL: &str = "doc_type,number,msisdn,carrier,province,kind,channel,strict";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// From the file name: `.csv`, or `.jsonl`/`.ndjson`.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub doc_type: String,
    pub number: String,
    pub msisdn: String,
    pub carrier: String,
    pub province: String,
    pub kind: String,
    pub channel: String,
    #[serde(default)]
    pub strict: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

impl Row {
    pub fn parse_csv(line: &str) -> Result<Row, String> {
        if line.contains('"') {
            return Err("quoted CSV fields are not supported".into());
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 8 && f.len() != 9 {
            return Err(format!(
                "expected 8 or 9 fields ({CSV_HEADER}), found {}",
                f.len()
            ));
        }
        let strict = match f[7].to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            other => return Err(format!("strict must be true or false, not '{other}'")),
        };
        Ok(Row {
            doc_type: f[0].into(),
            number: f[1].into(),
            msisdn: f[2].into(),
            carrier: f[3].into(),
            province: f[4].into(),
            kind: f[5].into(),
            channel: f[6].into(),
            strict,
            unit: f.get(8).map(|u| u.to_string()).unwrap_or_default(),
        })
    }

    pub fn parse_json(line: &str) -> Result<Row, String> {
        serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))
    }

    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.doc_type,
            self.number,
            self.msisdn,
            self.carrier,
            self.province,
            self.kind,
            self.channel,
            self.strict,
            self.unit
        )
    }

    /// The request this row stands for, validated exactly as the server
    /// validates it, so a bad row is caught before anything is sent.
    pub fn to_request(&self, request_id: String) -> Result<pb::RegisterCardRequest, String> {
        let doc_type = pb::DocType::from_str_name(&self.doc_type.to_ascii_uppercase())
            .filter(|d| *d != pb::DocType::Unspecified)
            .ok_or_else(|| format!("unknown doc_type '{}'", self.doc_type))?;
        let kind = pb::CardKind::from_str_name(&self.kind.to_ascii_uppercase())
            .filter(|k| *k != pb::CardKind::Unspecified)
            .ok_or_else(|| format!("kind must be personal or iot, not '{}'", self.kind))?;
        let channel = pb::Channel::from_str_name(&self.channel.to_ascii_uppercase())
            .filter(|c| *c != pb::Channel::Unspecified)
            .ok_or_else(|| {
                format!(
                    "channel must be own_hall, agent or online, not '{}'",
                    self.channel
                )
            })?;
        let req = pb::RegisterCardRequest {
            request_id,
            identity: Some(pb::Identity {
                doc_type: doc_type as i32,
                number: self.number.clone(),
            }),
            msisdn: self.msisdn.clone(),
            carrier: self.carrier.clone(),
            province: self.province.clone(),
            kind: kind as i32,
            channel: channel as i32,
            strict_verification: self.strict,
            responsible_unit: (!self.unit.is_empty()).then(|| pb::Identity {
                doc_type: pb::DocType::UnifiedSocialCreditCode as i32,
                number: self.unit.clone(),
            }),
        };
        convert::registration(&req).map_err(|e| format!("{}: {}", e.reason.as_str(), e.message))?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            doc_type: "RESIDENT_ID".into(),
            number: "11010519491231002X".into(),
            msisdn: "13800138000".into(),
            carrier: "CMCC".into(),
            province: "11".into(),
            kind: "personal".into(),
            channel: "own_hall".into(),
            strict: false,
            unit: String::new(),
        }
    }

    #[test]
    fn csv_and_json_round_trip() {
        let r = row();
        assert_eq!(Row::parse_csv(&r.to_csv()).unwrap(), r);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(Row::parse_json(&j).unwrap(), r);
        assert!(r.to_request("imp-1".into()).is_ok());
    }

    #[test]
    fn bad_rows_say_why() {
        assert!(Row::parse_csv("a,b")
            .unwrap_err()
            .contains("expected 8 or 9 fields"));
        assert!(Row::parse_csv("\"a\",b,c,d,e,f,g,h")
            .unwrap_err()
            .contains("quoted"));
        let mut r = row();
        r.number = "110105194912310021".into();
        assert!(r
            .to_request("x".into())
            .unwrap_err()
            .starts_with("INVALID_ID"));
        let mut r = row();
        r.channel = "shop".into();
        assert!(r.to_request("x".into()).unwrap_err().contains("channel"));
        let mut r = row();
        r.msisdn = "12".into();
        assert!(r
            .to_request("x".into())
            .unwrap_err()
            .starts_with("INVALID_MSISDN"));
        assert!(Row::parse_json("{").unwrap_err().contains("bad JSON"));
    }
}
