//! The XML messages WeChat pushes to the callback, and the passive replies we send back.
//!
//! The parser accepts WeChat's flat `<xml><Field>value</Field>...</xml>` shape and nothing
//! risky: a DOCTYPE (and with it any entity definition) is refused outright, nesting is
//! bounded, text must be UTF-8, and a field wxlogin reads may appear only once.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Deeper than any message WeChat sends (menu events nest one level inside a field).
const MAX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("malformed XML: {0}")]
    Syntax(#[from] quick_xml::Error),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("elements nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("text is not valid UTF-8")]
    NotUtf8,
    #[error("the document ends inside an element")]
    Truncated,
    #[error("the root element must be <xml>")]
    NoXmlRoot,
    #[error("{0} is missing or invalid")]
    BadField(&'static str),
    #[error("{0} appears more than once")]
    RepeatedField(&'static str),
}

/// The fields of a pushed message that wxlogin reads; others are skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub to_user: String,
    pub from_user: String,
    pub create_time: String,
    pub msg_type: String,
    pub event: String,
    pub event_key: String,
    pub msg_id: String,
    pub content: String,
    /// Safe mode: the ciphertext, and on replies its signature, timestamp and nonce.
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
}

/// What a message asks of wxlogin.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A parametric QR code was scanned, by a new follower (`subscribe`) or an existing one (`SCAN`).
    QrScan {
        scene_key: &'a str,
        subscribed: bool,
    },
    /// A follow that is not a scan: from a search, an article, the account's own QR code.
    Follow,
    /// The user unfollowed the account.
    Unsubscribe,
    /// A text message, with its content.
    Text(&'a str),
    /// Anything else: an image, a menu click, a location report.
    Other,
}

impl Message {
    pub fn parse(xml: &[u8]) -> Result<Self, MessageError> {
        let mut reader = Reader::from_reader(xml);
        reader.config_mut().trim_text(true);
        let mut message = Message::default();
        let mut depth = 0;
        let mut field: Option<Vec<u8>> = None;
        let mut saw_root = false;
        let mut read: Vec<&'static str> = Vec::new();
        loop {
            match reader.read_event()? {
                Event::Start(start) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(MessageError::TooDeep);
                    }
                    if depth == 1 {
                        check_root(start.name().as_ref(), &mut saw_root)?;
                    }
                    if depth == 2 {
                        message.check_once(start.name().as_ref(), &mut read)?;
                        field = Some(start.name().as_ref().to_vec());
                    } else {
                        field = None;
                    }
                }
                Event::Empty(start) if depth == 0 => {
                    check_root(start.name().as_ref(), &mut saw_root)?
                }
                Event::Empty(start) if depth == 1 => {
                    message.check_once(start.name().as_ref(), &mut read)?
                }
                Event::End(_) => {
                    depth -= 1;
                    field = None;
                }
                Event::Text(text) => {
                    let text = text.unescape()?;
                    message.append(field.as_deref(), &text);
                }
                Event::CData(cdata) => {
                    let raw = cdata.into_inner();
                    let text = std::str::from_utf8(&raw).map_err(|_| MessageError::NotUtf8)?;
                    message.append(field.as_deref(), text);
                }
                Event::DocType(_) => return Err(MessageError::Doctype),
                Event::Eof if depth > 0 => return Err(MessageError::Truncated),
                Event::Eof => break,
                Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
        }
        if !saw_root {
            return Err(MessageError::NoXmlRoot);
        }
        Ok(message)
    }

    /// Text inside one element is joined (CDATA and text may alternate); a repeated element
    /// never reaches here.
    fn append(&mut self, field: Option<&[u8]>, text: &str) {
        if let Some((_, slot)) = field.and_then(|name| self.slot(name)) {
            slot.push_str(text);
        }
    }

    /// Refuses a second element of a field wxlogin reads: `<FromUserName>a</FromUserName>
    /// <FromUserName>b</FromUserName>` must not read as `ab` (nor as either one).
    fn check_once(
        &mut self,
        name: &[u8],
        read: &mut Vec<&'static str>,
    ) -> Result<(), MessageError> {
        let Some((field, _)) = self.slot(name) else {
            return Ok(());
        };
        if read.contains(&field) {
            return Err(MessageError::RepeatedField(field));
        }
        read.push(field);
        Ok(())
    }

    /// The field wxlogin reads under the element `name`, with that name; `None` for others.
    fn slot(&mut self, name: &[u8]) -> Option<(&'static str, &mut String)> {
        Some(match name {
            b"ToUserName" => ("ToUserName", &mut self.to_user),
            b"FromUserName" => ("FromUserName", &mut self.from_user),
            b"CreateTime" => ("CreateTime", &mut self.create_time),
            b"MsgType" => ("MsgType", &mut self.msg_type),
            b"Event" => ("Event", &mut self.event),
            b"EventKey" => ("EventKey", &mut self.event_key),
            b"MsgId" => ("MsgId", &mut self.msg_id),
            b"Content" => ("Content", &mut self.content),
            b"Encrypt" => ("Encrypt", &mut self.encrypt),
            b"MsgSignature" => ("MsgSignature", &mut self.msg_signature),
            b"TimeStamp" => ("TimeStamp", &mut self.timestamp),
            b"Nonce" => ("Nonce", &mut self.nonce),
            _ => return None,
        })
    }

    pub fn inbound(&self) -> Inbound<'_> {
        if self.msg_type.eq_ignore_ascii_case("text") {
            return Inbound::Text(&self.content);
        }
        if !self.msg_type.eq_ignore_ascii_case("event") {
            return Inbound::Other;
        }
        let event = self.event.as_str();
        if event.eq_ignore_ascii_case("subscribe") {
            // Only a `qrscene_` prefix makes a follow a scan; other keys (none, or
            // `last_trade_no_...`) are plain follows.
            match self.event_key.strip_prefix("qrscene_") {
                Some(scene_key) => Inbound::QrScan {
                    scene_key,
                    subscribed: true,
                },
                None => Inbound::Follow,
            }
        } else if event.eq_ignore_ascii_case("scan") {
            Inbound::QrScan {
                scene_key: &self.event_key,
                subscribed: false,
            }
        } else if event.eq_ignore_ascii_case("unsubscribe") {
            Inbound::Unsubscribe
        } else {
            Inbound::Other
        }
    }

    /// The same delivery, retried by WeChat, has the same key.
    pub fn redelivery_key(&self) -> String {
        if self.msg_id.is_empty() {
            format!(
                "{}\n{}\n{}\n{}",
                self.from_user, self.create_time, self.event, self.event_key
            )
        } else {
            format!("{}\n{}", self.from_user, self.msg_id)
        }
    }

    /// `CreateTime` in Unix seconds, if it is a number.
    pub fn created_at(&self) -> Option<u64> {
        self.create_time.parse().ok()
    }
}

fn check_root(name: &[u8], saw_root: &mut bool) -> Result<(), MessageError> {
    if name != b"xml" || *saw_root {
        return Err(MessageError::NoXmlRoot);
    }
    *saw_root = true;
    Ok(())
}

/// A passive text reply to the user who sent `to_user`'s message.
pub fn text_reply(to_user: &str, from_account: &str, create_time: u64, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content></xml>",
        cdata(to_user),
        cdata(from_account),
        cdata(content)
    )
}

/// Wraps text in CDATA; a `]]>` inside is split across two sections so it cannot end the first early.
pub(crate) fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, key: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>\n\
             <CreateTime>1732406400</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{name}]]></Event>\n\
             <EventKey><![CDATA[{key}]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>"
        )
    }

    #[test]
    fn parses_a_new_follower_scan() {
        let message = Message::parse(event("subscribe", "qrscene_SCENE").as_bytes()).unwrap();
        assert_eq!(message.to_user, "gh_account");
        assert_eq!(message.from_user, "oUser");
        assert_eq!(message.created_at(), Some(1_732_406_400));
        assert_eq!(
            message.inbound(),
            Inbound::QrScan {
                scene_key: "SCENE",
                subscribed: true
            }
        );
    }

    #[test]
    fn event_names_match_in_any_case() {
        for name in ["SCAN", "scan", "Scan"] {
            let message = Message::parse(event(name, "SCENE").as_bytes()).unwrap();
            assert_eq!(
                message.inbound(),
                Inbound::QrScan {
                    scene_key: "SCENE",
                    subscribed: false
                }
            );
        }
        let message = Message::parse(event("UNSUBSCRIBE", "").as_bytes()).unwrap();
        assert_eq!(message.inbound(), Inbound::Unsubscribe);
    }

    #[test]
    fn qrscene_is_stripped_only_as_a_prefix() {
        let message = Message::parse(event("subscribe", "qrscene_qrscene_X").as_bytes()).unwrap();
        assert_eq!(
            message.inbound(),
            Inbound::QrScan {
                scene_key: "qrscene_X",
                subscribed: true
            }
        );
        for key in ["", "last_trade_no_4200001", "x_qrscene_Y"] {
            let message = Message::parse(event("subscribe", key).as_bytes()).unwrap();
            assert_eq!(message.inbound(), Inbound::Follow, "{key}");
        }
    }

    #[test]
    fn plain_text_and_escapes_are_read() {
        let xml = b"<?xml version=\"1.0\"?><xml><FromUserName>a&amp;b</FromUserName><MsgType>text</MsgType><MsgId>42</MsgId><Extra><Nested>1</Nested></Extra></xml>";
        let message = Message::parse(xml).unwrap();
        assert_eq!(message.from_user, "a&b");
        assert_eq!(message.inbound(), Inbound::Text(""));
        assert_eq!(message.redelivery_key(), "a&b\n42");
    }

    #[test]
    fn text_messages_carry_their_content() {
        let xml = b"<xml><FromUserName><![CDATA[oUser]]></FromUserName><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ 123456 ]]></Content><MsgId>7</MsgId></xml>";
        let message = Message::parse(xml).unwrap();
        assert_eq!(message.inbound(), Inbound::Text(" 123456 "));
        let image = b"<xml><MsgType>image</MsgType><Content>123456</Content></xml>";
        assert_eq!(Message::parse(image).unwrap().inbound(), Inbound::Other);
    }

    #[test]
    fn redeliveries_share_a_key_and_other_events_do_not() {
        let a = Message::parse(event("SCAN", "S1").as_bytes()).unwrap();
        let b = Message::parse(event("SCAN", "S1").as_bytes()).unwrap();
        let c = Message::parse(event("SCAN", "S2").as_bytes()).unwrap();
        assert_eq!(a.redelivery_key(), b.redelivery_key());
        assert_ne!(a.redelivery_key(), c.redelivery_key());
    }

    #[test]
    fn refuses_hostile_or_broken_xml() {
        let nested = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
        let cases: &[&[u8]] = &[
            b"",
            b"not xml",
            b"<xml><FromUserName>x</ToUserName></xml>",
            b"<xml><FromUserName>x</FromUserName>",
            b"<other><FromUserName>x</FromUserName></other>",
            b"<xml/><xml/>",
            b"<!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><FromUserName>&e;</FromUserName></xml>",
            b"<!DOCTYPE xml [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><xml><Content>&b;</Content></xml>",
            b"<xml><FromUserName>&undefined;</FromUserName></xml>",
            b"<xml><FromUserName><![CDATA[\xff\xfe]]></FromUserName></xml>",
            nested.as_bytes(),
        ];
        for xml in cases {
            assert!(
                Message::parse(xml).is_err(),
                "{}",
                String::from_utf8_lossy(xml)
            );
        }
    }

    #[test]
    fn a_field_read_twice_is_refused() {
        let cases: &[&[u8]] = &[
            b"<xml><FromUserName>a</FromUserName><FromUserName>b</FromUserName></xml>",
            b"<xml><FromUserName/><FromUserName>b</FromUserName></xml>",
            b"<xml><Event>SCAN</Event><MsgType>event</MsgType><Event>unsubscribe</Event></xml>",
            b"<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
        ];
        for xml in cases {
            assert!(
                matches!(Message::parse(xml), Err(MessageError::RepeatedField(_))),
                "{}",
                String::from_utf8_lossy(xml)
            );
        }
        // Text and CDATA inside one element are one value; fields wxlogin ignores may repeat,
        // and so may nested elements with a read field's name.
        let xml =
            b"<xml><FromUserName>a<![CDATA[b]]></FromUserName><Extra>1</Extra><Extra>2</Extra>\
            <Info><Content>x</Content><Content>y</Content></Info></xml>";
        let message = Message::parse(xml).unwrap();
        assert_eq!(
            (message.from_user.as_str(), message.content.as_str()),
            ("ab", "")
        );
    }

    #[test]
    fn replies_round_trip_even_with_cdata_terminators() {
        let reply = text_reply("oUser", "gh_account", 1, "done ]]> <b>&");
        let message = Message::parse(reply.as_bytes()).unwrap();
        assert_eq!(message.content, "done ]]> <b>&");
        assert_eq!(message.to_user, "oUser");
        assert_eq!(message.msg_type, "text");
    }
}
