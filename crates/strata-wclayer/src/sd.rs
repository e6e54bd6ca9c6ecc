//! Security descriptors (self-relative SECURITY_DESCRIPTOR, §1.6.1): parsed for display
//! and validation, rendered as SDDL, and built from the SDDL subset layers use.
//!
//! Layers carry descriptors as opaque bytes; nothing here rewrites one that came in.
//!
//! ```
//! use strata_wclayer::sd::SecurityDescriptor;
//! let sd = SecurityDescriptor::from_sddl("O:BAG:SYD:(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x1200a9;;;BU)").unwrap();
//! let bytes = sd.to_bytes();
//! assert_eq!(bytes.len(), 124); // BuildKit's default for files
//! assert_eq!(SecurityDescriptor::parse(&bytes).unwrap().to_sddl(), "O:BAG:SYD:(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x1200a9;;;BU)");
//! ```

use std::fmt::Write as _;

use crate::Error;

/// Control bit: the descriptor has a DACL (absent, it grants everyone everything).
pub const SE_DACL_PRESENT: u16 = 0x0004;
/// Control bit: the descriptor has a SACL.
pub const SE_SACL_PRESENT: u16 = 0x0010;
/// Control bit: the DACL is to be propagated to children (SDDL `AR` in `D:`).
pub const SE_DACL_AUTO_INHERIT_REQ: u16 = 0x0100;
/// Control bit: the SACL is to be propagated to children (SDDL `AR` in `S:`).
pub const SE_SACL_AUTO_INHERIT_REQ: u16 = 0x0200;
/// Control bit: the DACL was set up for automatic inheritance (SDDL `AI` in `D:`).
pub const SE_DACL_AUTO_INHERITED: u16 = 0x0400;
/// Control bit: the SACL was set up for automatic inheritance (SDDL `AI` in `S:`).
pub const SE_SACL_AUTO_INHERITED: u16 = 0x0800;
/// Control bit: the DACL takes nothing from the parent (SDDL `P` in `D:`).
pub const SE_DACL_PROTECTED: u16 = 0x1000;
/// Control bit: the SACL takes nothing from the parent (SDDL `P` in `S:`).
pub const SE_SACL_PROTECTED: u16 = 0x2000;
/// Control bit: the descriptor is one contiguous buffer with offsets (as stored).
pub const SE_SELF_RELATIVE: u16 = 0x8000;

/// A security identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sid {
    /// The identifier authority (48 bits; 5 is NT AUTHORITY).
    pub authority: u64,
    /// The relative identifiers after it (`S-1-5-32-544`: 32, 544).
    pub sub_authorities: Vec<u32>,
}

/// One access control entry of the basic kinds (allow, deny, audit, alarm, label).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ace {
    /// ACCESS_ALLOWED_ACE_TYPE (0), ACCESS_DENIED_ACE_TYPE (1) and the others.
    pub ace_type: u8,
    /// Inheritance and audit flags (OBJECT_INHERIT_ACE and friends).
    pub flags: u8,
    /// The access rights granted, denied or audited.
    pub mask: u32,
    /// Whom the entry concerns.
    pub sid: Sid,
}

/// An access control list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acl {
    /// ACL_REVISION (2) or ACL_REVISION_DS (4).
    pub revision: u8,
    /// The entries, in order (order matters to Windows).
    pub aces: Vec<Ace>,
}

/// A parsed self-relative security descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecurityDescriptor {
    /// The `SE_*` control bits.
    pub control: u16,
    /// The owner, if set.
    pub owner: Option<Sid>,
    /// The primary group, if set.
    pub group: Option<Sid>,
    /// `None` with `SE_SACL_PRESENT` set is a NULL SACL.
    pub sacl: Option<Acl>,
    /// `None` with `SE_DACL_PRESENT` set is a NULL DACL (everyone has access).
    pub dacl: Option<Acl>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadSecurityDescriptor {
        reason: reason.into(),
    }
}

const SID_ALIASES: &[(&str, &str)] = &[
    ("WD", "S-1-1-0"),
    ("CO", "S-1-3-0"),
    ("CG", "S-1-3-1"),
    ("OW", "S-1-3-4"),
    ("NU", "S-1-5-2"),
    ("IU", "S-1-5-4"),
    ("SU", "S-1-5-6"),
    ("AN", "S-1-5-7"),
    ("ED", "S-1-5-9"),
    ("PS", "S-1-5-10"),
    ("AU", "S-1-5-11"),
    ("RC", "S-1-5-12"),
    ("SY", "S-1-5-18"),
    ("LS", "S-1-5-19"),
    ("NS", "S-1-5-20"),
    ("BA", "S-1-5-32-544"),
    ("BU", "S-1-5-32-545"),
    ("BG", "S-1-5-32-546"),
    ("PU", "S-1-5-32-547"),
    ("AO", "S-1-5-32-548"),
    ("SO", "S-1-5-32-549"),
    ("PO", "S-1-5-32-550"),
    ("BO", "S-1-5-32-551"),
    ("RE", "S-1-5-32-552"),
    ("RU", "S-1-5-32-554"),
    ("RD", "S-1-5-32-555"),
    ("NO", "S-1-5-32-556"),
    ("AC", "S-1-15-2-1"),
    ("LW", "S-1-16-4096"),
    ("ME", "S-1-16-8192"),
    ("HI", "S-1-16-12288"),
    ("SI", "S-1-16-16384"),
];

/// Whole-mask aliases, tried first when rendering.
const MASK_ALIASES: &[(&str, u32)] = &[
    ("GA", 0x1000_0000),
    ("GX", 0x2000_0000),
    ("GW", 0x4000_0000),
    ("GR", 0x8000_0000),
    ("FA", 0x001F_01FF),
    ("FR", 0x0012_0089),
    ("FW", 0x0012_0116),
    ("FX", 0x0012_00A0),
    ("KA", 0x000F_003F),
    ("KR", 0x0002_0019),
    ("KW", 0x0002_0006),
];

/// Single-bit rights, combined when no whole-mask alias fits.
const MASK_BITS: &[(&str, u32)] = &[
    ("CC", 0x1),
    ("DC", 0x2),
    ("LC", 0x4),
    ("SW", 0x8),
    ("RP", 0x10),
    ("WP", 0x20),
    ("DT", 0x40),
    ("LO", 0x80),
    ("CR", 0x100),
    ("SD", 0x1_0000),
    ("RC", 0x2_0000),
    ("WD", 0x4_0000),
    ("WO", 0x8_0000),
];

const ACE_TYPES: &[(&str, u8)] = &[("A", 0), ("D", 1), ("AU", 2), ("AL", 3), ("ML", 0x11)];

const ACE_FLAGS: &[(&str, u8)] = &[
    ("OI", 0x1),
    ("CI", 0x2),
    ("NP", 0x4),
    ("IO", 0x8),
    ("ID", 0x10),
    ("SA", 0x40),
    ("FA", 0x80),
];

impl Sid {
    fn parse(b: &[u8], at: usize) -> Result<(Sid, usize), Error> {
        let head = b
            .get(at..at + 8)
            .ok_or_else(|| bad(format!("SID at byte {at} runs past the end")))?;
        if head[0] != 1 {
            return Err(bad(format!("SID at byte {at} has revision {}", head[0])));
        }
        let n = head[1] as usize;
        if n > 15 {
            return Err(bad(format!(
                "SID at byte {at} has {n} sub-authorities (at most 15)"
            )));
        }
        let subs = b
            .get(at + 8..at + 8 + 4 * n)
            .ok_or_else(|| bad(format!("SID at byte {at} runs past the end")))?;
        let authority = head[2..8].iter().fold(0u64, |a, &x| a << 8 | x as u64);
        let sub_authorities = subs
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((
            Sid {
                authority,
                sub_authorities,
            },
            8 + 4 * n,
        ))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.push(self.sub_authorities.len() as u8);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    fn len(&self) -> usize {
        8 + 4 * self.sub_authorities.len()
    }

    /// `S-1-5-32-544`.
    pub fn to_string_form(&self) -> String {
        let mut s = if self.authority < 1 << 32 {
            format!("S-1-{}", self.authority)
        } else {
            format!("S-1-{:#x}", self.authority)
        };
        for sub in &self.sub_authorities {
            let _ = write!(s, "-{sub}");
        }
        s
    }

    /// `BA` for a well-known SID, else `S-1-…`.
    pub fn to_sddl(&self) -> String {
        let long = self.to_string_form();
        SID_ALIASES
            .iter()
            .find(|(_, l)| *l == long)
            .map_or(long, |(a, _)| (*a).to_owned())
    }

    /// Parses `BA` or `S-1-5-32-544`.
    pub fn from_sddl(s: &str) -> Result<Sid, Error> {
        let long = SID_ALIASES
            .iter()
            .find(|(a, _)| *a == s)
            .map_or(s, |(_, l)| l);
        let rest = long
            .strip_prefix("S-1-")
            .ok_or_else(|| bad(format!("`{s}` is not a SID (an alias like BA or S-1-…)")))?;
        let mut parts = rest.split('-');
        let auth = parts.next().unwrap_or_default();
        let authority = match auth.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => auth.parse().ok(),
        }
        .filter(|&a| a < 1 << 48)
        .ok_or_else(|| bad(format!("SID `{s}` has a bad identifier authority")))?;
        let sub_authorities = parts
            .map(|p| {
                p.parse::<u32>()
                    .map_err(|_| bad(format!("SID `{s}` has a bad sub-authority `{p}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sub_authorities.len() > 15 {
            return Err(bad(format!("SID `{s}` has more than 15 sub-authorities")));
        }
        Ok(Sid {
            authority,
            sub_authorities,
        })
    }
}

impl Acl {
    fn parse(b: &[u8], at: usize) -> Result<Acl, Error> {
        let head = b
            .get(at..at + 8)
            .ok_or_else(|| bad(format!("ACL at byte {at} runs past the end")))?;
        let revision = head[0];
        if !(2..=4).contains(&revision) {
            return Err(bad(format!("ACL at byte {at} has revision {revision}")));
        }
        let size = u16::from_le_bytes([head[2], head[3]]) as usize;
        let count = u16::from_le_bytes([head[4], head[5]]) as usize;
        let acl = b.get(at..at + size).filter(|_| size >= 8).ok_or_else(|| {
            bad(format!(
                "ACL at byte {at} of size {size} runs past the end ({} bytes)",
                b.len()
            ))
        })?;
        let mut aces = Vec::with_capacity(count.min(64));
        let mut p = 8;
        for i in 0..count {
            let h = acl
                .get(p..p + 8)
                .ok_or_else(|| bad(format!("ACE {i} of the ACL at byte {at} runs past the ACL")))?;
            let ace_size = u16::from_le_bytes([h[2], h[3]]) as usize;
            let ace = acl
                .get(p..p + ace_size)
                .filter(|_| ace_size >= 8)
                .ok_or_else(|| {
                    bad(format!(
                        "ACE {i} of the ACL at byte {at} has size {ace_size}, past the ACL"
                    ))
                })?;
            let ace_type = h[0];
            if !ACE_TYPES.iter().any(|(_, t)| *t == ace_type) {
                return Err(bad(format!(
                    "ACE {i} has type {ace_type:#x}, which Strata does not decode"
                )));
            }
            let (sid, sid_len) = Sid::parse(ace, 8)?;
            if 8 + sid_len > ace_size {
                return Err(bad(format!("ACE {i}: its SID runs past the ACE")));
            }
            aces.push(Ace {
                ace_type,
                flags: h[1],
                mask: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
                sid,
            });
            p += ace_size;
        }
        Ok(Acl { revision, aces })
    }

    fn len(&self) -> usize {
        8 + self.aces.iter().map(|a| 8 + a.sid.len()).sum::<usize>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.revision);
        out.push(0);
        out.extend_from_slice(&(self.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.aces.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &self.aces {
            out.push(a.ace_type);
            out.push(a.flags);
            out.extend_from_slice(&((8 + a.sid.len()) as u16).to_le_bytes());
            out.extend_from_slice(&a.mask.to_le_bytes());
            a.sid.encode(out);
        }
    }

    fn to_sddl(&self, out: &mut String) {
        for a in &self.aces {
            let ty = ACE_TYPES
                .iter()
                .find(|(_, t)| *t == a.ace_type)
                .map_or("?", |(n, _)| n);
            out.push('(');
            out.push_str(ty);
            out.push(';');
            for (n, f) in ACE_FLAGS {
                if a.flags & f != 0 {
                    out.push_str(n);
                }
            }
            out.push(';');
            out.push_str(&mask_to_sddl(a.mask));
            out.push_str(";;;");
            out.push_str(&a.sid.to_sddl());
            out.push(')');
        }
    }
}

fn mask_to_sddl(mask: u32) -> String {
    if let Some((n, _)) = MASK_ALIASES.iter().find(|(_, m)| *m == mask) {
        return (*n).to_owned();
    }
    let named: u32 = MASK_BITS.iter().map(|(_, b)| b).fold(0, |a, b| a | b);
    if mask != 0 && mask & !named == 0 {
        return MASK_BITS
            .iter()
            .filter(|(_, b)| mask & b != 0)
            .map(|(n, _)| *n)
            .collect();
    }
    format!("{mask:#x}")
}

fn mask_from_sddl(s: &str) -> Result<u32, Error> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).map_err(|_| bad(format!("bad access mask `{s}`")));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad(format!("bad access mask `{s}`")));
    }
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(bad(format!("bad access rights `{s}`")));
    }
    let mut mask = 0;
    for i in (0..s.len()).step_by(2) {
        let code = &s[i..i + 2];
        let bit = MASK_ALIASES
            .iter()
            .chain(MASK_BITS)
            .find(|(n, _)| *n == code)
            .map(|(_, b)| *b)
            .ok_or_else(|| bad(format!("unknown access right `{code}` in `{s}`")))?;
        mask |= bit;
    }
    Ok(mask)
}

impl SecurityDescriptor {
    /// Parses and validates a self-relative descriptor.
    pub fn parse(b: &[u8]) -> Result<SecurityDescriptor, Error> {
        if b.len() < 20 {
            return Err(bad(format!(
                "{} bytes cannot hold a descriptor header (20)",
                b.len()
            )));
        }
        if b[0] != 1 {
            return Err(bad(format!("revision {} (expected 1)", b[0])));
        }
        let control = u16::from_le_bytes([b[2], b[3]]);
        if control & SE_SELF_RELATIVE == 0 {
            return Err(bad("not self-relative (SE_SELF_RELATIVE is not set)"));
        }
        let off = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let sid_at = |o: usize| -> Result<Option<Sid>, Error> {
            if o == 0 {
                return Ok(None);
            }
            Sid::parse(b, o).map(|(s, _)| Some(s))
        };
        let acl_at = |o: usize, present: bool| -> Result<Option<Acl>, Error> {
            if o == 0 || !present {
                return Ok(None);
            }
            Acl::parse(b, o).map(Some)
        };
        Ok(SecurityDescriptor {
            control,
            owner: sid_at(off(4))?,
            group: sid_at(off(8))?,
            sacl: acl_at(off(12), control & SE_SACL_PRESENT != 0)?,
            dacl: acl_at(off(16), control & SE_DACL_PRESENT != 0)?,
        })
    }

    /// The self-relative bytes: header, owner, group, SACL, DACL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut offs = [0u32; 4];
        if let Some(s) = &self.owner {
            offs[0] = 20 + body.len() as u32;
            s.encode(&mut body);
        }
        if let Some(s) = &self.group {
            offs[1] = 20 + body.len() as u32;
            s.encode(&mut body);
        }
        if let Some(a) = &self.sacl {
            offs[2] = 20 + body.len() as u32;
            a.encode(&mut body);
        }
        if let Some(a) = &self.dacl {
            offs[3] = 20 + body.len() as u32;
            a.encode(&mut body);
        }
        let mut out = vec![1, 0];
        out.extend_from_slice(&(self.control | SE_SELF_RELATIVE).to_le_bytes());
        for o in offs {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&body);
        out
    }

    /// SDDL text (`O:BAG:SYD:(A;;FA;;;BA)`).
    pub fn to_sddl(&self) -> String {
        let mut s = String::new();
        if let Some(o) = &self.owner {
            let _ = write!(s, "O:{}", o.to_sddl());
        }
        if let Some(g) = &self.group {
            let _ = write!(s, "G:{}", g.to_sddl());
        }
        for (tag, acl, present, protected, inherited, req) in [
            (
                "D",
                &self.dacl,
                SE_DACL_PRESENT,
                SE_DACL_PROTECTED,
                SE_DACL_AUTO_INHERITED,
                SE_DACL_AUTO_INHERIT_REQ,
            ),
            (
                "S",
                &self.sacl,
                SE_SACL_PRESENT,
                SE_SACL_PROTECTED,
                SE_SACL_AUTO_INHERITED,
                SE_SACL_AUTO_INHERIT_REQ,
            ),
        ] {
            if self.control & present == 0 {
                continue;
            }
            let _ = write!(s, "{tag}:");
            for (bit, name) in [(protected, "P"), (req, "AR"), (inherited, "AI")] {
                if self.control & bit != 0 {
                    s.push_str(name);
                }
            }
            match acl {
                Some(a) => a.to_sddl(&mut s),
                None => s.push_str("NO_ACCESS_CONTROL"),
            }
        }
        s
    }

    /// Builds a descriptor from SDDL: owner `O:`, group `G:`, `D:`/`S:` with flags
    /// `P`, `AR`, `AI` and ACEs of types `A`, `D`, `AU`, `AL`, `ML` without object GUIDs;
    /// rights as aliases (`FA`, `GA`, `LC`…) or numbers; SIDs as aliases or `S-1-…`.
    pub fn from_sddl(sddl: &str) -> Result<SecurityDescriptor, Error> {
        let err = |r: String| Error::BadSecurityDescriptor {
            reason: format!("SDDL `{sddl}`: {r}"),
        };
        let mut sd = SecurityDescriptor {
            control: SE_SELF_RELATIVE,
            owner: None,
            group: None,
            sacl: None,
            dacl: None,
        };
        let mut rest = sddl.trim();
        while !rest.is_empty() {
            let (tag, after) = rest
                .split_once(':')
                .ok_or_else(|| err(format!("expected O:, G:, D: or S: at `{rest}`")))?;
            // The component runs to the next `X:` that is not inside an ACE.
            let mut end = after.len();
            let mut depth = 0i32;
            let b = after.as_bytes();
            for (i, &c) in b.iter().enumerate() {
                match c {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ if depth == 0 && b.get(i + 1) == Some(&b':') && b"OGDS".contains(&c) => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let value = &after[..end];
            rest = &after[end..];
            match tag {
                "O" => sd.owner = Some(Sid::from_sddl(value).map_err(|e| err(e.to_string()))?),
                "G" => sd.group = Some(Sid::from_sddl(value).map_err(|e| err(e.to_string()))?),
                "D" | "S" => {
                    let dacl = tag == "D";
                    let (flags, aces) = value.split_at(value.find('(').unwrap_or(value.len()));
                    sd.control |= if dacl {
                        SE_DACL_PRESENT
                    } else {
                        SE_SACL_PRESENT
                    };
                    let mut f = flags;
                    let mut null_acl = false;
                    while !f.is_empty() {
                        let (bit, n) = if let Some(r) = f.strip_prefix("NO_ACCESS_CONTROL") {
                            null_acl = true;
                            f = r;
                            continue;
                        } else if f.starts_with("AR") {
                            (
                                if dacl {
                                    SE_DACL_AUTO_INHERIT_REQ
                                } else {
                                    SE_SACL_AUTO_INHERIT_REQ
                                },
                                2,
                            )
                        } else if f.starts_with("AI") {
                            (
                                if dacl {
                                    SE_DACL_AUTO_INHERITED
                                } else {
                                    SE_SACL_AUTO_INHERITED
                                },
                                2,
                            )
                        } else if f.starts_with('P') {
                            (
                                if dacl {
                                    SE_DACL_PROTECTED
                                } else {
                                    SE_SACL_PROTECTED
                                },
                                1,
                            )
                        } else {
                            return Err(err(format!("unknown ACL flag at `{f}`")));
                        };
                        sd.control |= bit;
                        f = &f[n..];
                    }
                    let mut list = Vec::new();
                    let mut a = aces;
                    while let Some(r) = a.strip_prefix('(') {
                        let close = r
                            .find(')')
                            .ok_or_else(|| err("an ACE without `)`".into()))?;
                        list.push(parse_ace(&r[..close]).map_err(|e| err(e.to_string()))?);
                        a = &r[close + 1..];
                    }
                    if !a.is_empty() {
                        return Err(err(format!("unexpected `{a}` after the ACEs")));
                    }
                    let acl = (!null_acl).then_some(Acl {
                        revision: 2,
                        aces: list,
                    });
                    if dacl {
                        sd.dacl = acl;
                    } else {
                        sd.sacl = acl;
                    }
                }
                other => return Err(err(format!("unknown component `{other}:`"))),
            }
        }
        Ok(sd)
    }
}

fn parse_ace(s: &str) -> Result<Ace, Error> {
    let parts: Vec<&str> = s.split(';').collect();
    if parts.len() != 6 {
        return Err(bad(format!("ACE `({s})` does not have 6 fields")));
    }
    let ace_type = ACE_TYPES
        .iter()
        .find(|(n, _)| *n == parts[0])
        .map(|(_, t)| *t)
        .ok_or_else(|| bad(format!("unsupported ACE type `{}`", parts[0])))?;
    let mut flags = 0;
    let f = parts[1];
    if !f.len().is_multiple_of(2) || !f.is_ascii() {
        return Err(bad(format!("bad ACE flags `{f}`")));
    }
    for i in (0..f.len()).step_by(2) {
        flags |= ACE_FLAGS
            .iter()
            .find(|(n, _)| *n == &f[i..i + 2])
            .map(|(_, b)| *b)
            .ok_or_else(|| bad(format!("unknown ACE flag `{}`", &f[i..i + 2])))?;
    }
    if !parts[3].is_empty() || !parts[4].is_empty() {
        return Err(bad("object ACEs (with GUIDs) are not supported"));
    }
    Ok(Ace {
        ace_type,
        flags,
        mask: mask_from_sddl(parts[2])?,
        sid: Sid::from_sddl(parts[5])?,
    })
}

/// BuildKit's default descriptor for directories (216 bytes).
pub const BUILDKIT_DIR_SDDL: &str = "O:BAG:SYD:(A;OICI;FA;;;BA)(A;OICI;FA;;;SY)(A;;FA;;;BA)(A;OICIIO;GA;;;CO)(A;OICI;0x1200a9;;;BU)(A;CI;LC;;;BU)(A;CI;DC;;;BU)";
/// BuildKit's default descriptor for files (124 bytes).
pub const BUILDKIT_FILE_SDDL: &str = "O:BAG:SYD:(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x1200a9;;;BU)";
/// ko's (and crane's) descriptor, base64 as they write it: owner and group BUILTIN\Users, no DACL.
pub const KO_SD_BASE64: &str =
    "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAhAgAAAQIAAAAAAAUgAAAAIQIAAA==";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    // BuildKit's constants (util/winlayers), the bytes Windows produced from the SDDL above.
    const BUILDKIT_DIR_B64: &str = "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgCoAAcAAAAAAxgA/wEfAAECAAAAAAAFIAAAACACAAAAAxQA/wEfAAEBAAAAAAAFEgAAAAAAGAD/AR8AAQIAAAAAAAUgAAAAIAIAAAALFAAAAAAQAQEAAAAAAAMAAAAAAAMYAKkAEgABAgAAAAAABSAAAAAhAgAAAAIYAAQAAAABAgAAAAAABSAAAAAhAgAAAAIYAAIAAAABAgAAAAAABSAAAAAhAgAA";
    const BUILDKIT_FILE_B64: &str = "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgBMAAMAAAAAABgA/wEfAAECAAAAAAAFIAAAACACAAAAABQA/wEfAAEBAAAAAAAFEgAAAAAAGACpABIAAQIAAAAAAAUgAAAAIQIAAA==";

    #[test]
    fn sddl_builds_buildkits_exact_bytes() {
        for (sddl, b64, len) in [
            (BUILDKIT_DIR_SDDL, BUILDKIT_DIR_B64, 216),
            (BUILDKIT_FILE_SDDL, BUILDKIT_FILE_B64, 124),
        ] {
            let bytes = SecurityDescriptor::from_sddl(sddl).unwrap().to_bytes();
            assert_eq!(bytes.len(), len);
            assert_eq!(B64.encode(&bytes), b64);
            assert_eq!(SecurityDescriptor::parse(&bytes).unwrap().to_sddl(), sddl);
        }
    }

    #[test]
    fn ko_descriptor_renders_and_rebuilds() {
        let ko = B64.decode(KO_SD_BASE64).unwrap();
        assert_eq!(ko.len(), 52);
        let sd = SecurityDescriptor::parse(&ko).unwrap();
        assert_eq!(sd.to_sddl(), "O:BUG:BU");
        assert_eq!(
            SecurityDescriptor::from_sddl("O:BUG:BU")
                .unwrap()
                .to_bytes(),
            ko
        );
    }

    #[test]
    fn hostile_descriptors_are_errors() {
        let ko = B64.decode(KO_SD_BASE64).unwrap();
        let mut b = ko.clone();
        b[4] = 0xf0; // owner offset past the end
        assert!(SecurityDescriptor::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("past the end"));
        let mut b = ko.clone();
        b[3] = 0; // not self-relative
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut f = B64.decode(BUILDKIT_FILE_B64).unwrap();
        f[0x32] = 0xff; // ACL size
        assert!(SecurityDescriptor::parse(&f).is_err());
        assert!(SecurityDescriptor::from_sddl("O:XX").is_err());
        assert!(SecurityDescriptor::from_sddl("D:(A;;QQ;;;BA)").is_err());
        assert!(SecurityDescriptor::from_sddl("D:(A;;FA;;BA)").is_err());
        // Found by fuzzing: non-ASCII text next to a component tag, in rights and in flags.
        for s in [
            "O:\u{e9}\u{301}G:BA",
            "D:(A;;F\u{e9};;;BA)",
            "D:(A;O\u{e9};FA;;;BA)",
            "x\u{301}:",
        ] {
            assert!(SecurityDescriptor::from_sddl(s).is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SecurityDescriptor::parse(&buf);
        }

        #[test]
        fn built_descriptors_round_trip(
            owner in proptest::option::of((0u64..1 << 48, proptest::collection::vec(any::<u32>(), 0..6))),
            aces in proptest::collection::vec((0usize..2, any::<u8>(), any::<u32>(), proptest::collection::vec(any::<u32>(), 0..5)), 0..6),
        ) {
            let sd = SecurityDescriptor {
                control: SE_SELF_RELATIVE | SE_DACL_PRESENT,
                owner: owner.map(|(authority, sub_authorities)| Sid { authority, sub_authorities }),
                group: None,
                sacl: None,
                dacl: Some(Acl { revision: 2, aces: aces.into_iter().map(|(t, flags, mask, subs)| Ace {
                    ace_type: t as u8, flags, mask, sid: Sid { authority: 5, sub_authorities: subs } }).collect() }),
            };
            let bytes = sd.to_bytes();
            prop_assert_eq!(SecurityDescriptor::parse(&bytes).unwrap(), sd);
        }
    }
}
