//! Jurisdictions: ISO 3166-1 alpha-2 country codes and the blocs residency rules name
//! (`EU`, `EEA`, `EFTA`, `FIVE_EYES`). A bloc expands to its member countries; a country
//! expands to itself.

/// Every ISO 3166-1 alpha-2 code with its short English name, sorted by code.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AD", "Andorra"),
    ("AE", "United Arab Emirates"),
    ("AF", "Afghanistan"),
    ("AG", "Antigua and Barbuda"),
    ("AI", "Anguilla"),
    ("AL", "Albania"),
    ("AM", "Armenia"),
    ("AO", "Angola"),
    ("AQ", "Antarctica"),
    ("AR", "Argentina"),
    ("AS", "American Samoa"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("AW", "Aruba"),
    ("AX", "Åland Islands"),
    ("AZ", "Azerbaijan"),
    ("BA", "Bosnia and Herzegovina"),
    ("BB", "Barbados"),
    ("BD", "Bangladesh"),
    ("BE", "Belgium"),
    ("BF", "Burkina Faso"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BI", "Burundi"),
    ("BJ", "Benin"),
    ("BL", "Saint Barthélemy"),
    ("BM", "Bermuda"),
    ("BN", "Brunei Darussalam"),
    ("BO", "Bolivia"),
    ("BQ", "Bonaire, Sint Eustatius and Saba"),
    ("BR", "Brazil"),
    ("BS", "Bahamas"),
    ("BT", "Bhutan"),
    ("BV", "Bouvet Island"),
    ("BW", "Botswana"),
    ("BY", "Belarus"),
    ("BZ", "Belize"),
    ("CA", "Canada"),
    ("CC", "Cocos (Keeling) Islands"),
    ("CD", "Congo, Democratic Republic of the"),
    ("CF", "Central African Republic"),
    ("CG", "Congo"),
    ("CH", "Switzerland"),
    ("CI", "Côte d'Ivoire"),
    ("CK", "Cook Islands"),
    ("CL", "Chile"),
    ("CM", "Cameroon"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CR", "Costa Rica"),
    ("CU", "Cuba"),
    ("CV", "Cabo Verde"),
    ("CW", "Curaçao"),
    ("CX", "Christmas Island"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DJ", "Djibouti"),
    ("DK", "Denmark"),
    ("DM", "Dominica"),
    ("DO", "Dominican Republic"),
    ("DZ", "Algeria"),
    ("EC", "Ecuador"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("EH", "Western Sahara"),
    ("ER", "Eritrea"),
    ("ES", "Spain"),
    ("ET", "Ethiopia"),
    ("FI", "Finland"),
    ("FJ", "Fiji"),
    ("FK", "Falkland Islands (Malvinas)"),
    ("FM", "Micronesia"),
    ("FO", "Faroe Islands"),
    ("FR", "France"),
    ("GA", "Gabon"),
    ("GB", "United Kingdom"),
    ("GD", "Grenada"),
    ("GE", "Georgia"),
    ("GF", "French Guiana"),
    ("GG", "Guernsey"),
    ("GH", "Ghana"),
    ("GI", "Gibraltar"),
    ("GL", "Greenland"),
    ("GM", "Gambia"),
    ("GN", "Guinea"),
    ("GP", "Guadeloupe"),
    ("GQ", "Equatorial Guinea"),
    ("GR", "Greece"),
    ("GS", "South Georgia and the South Sandwich Islands"),
    ("GT", "Guatemala"),
    ("GU", "Guam"),
    ("GW", "Guinea-Bissau"),
    ("GY", "Guyana"),
    ("HK", "Hong Kong"),
    ("HM", "Heard Island and McDonald Islands"),
    ("HN", "Honduras"),
    ("HR", "Croatia"),
    ("HT", "Haiti"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IM", "Isle of Man"),
    ("IN", "India"),
    ("IO", "British Indian Ocean Territory"),
    ("IQ", "Iraq"),
    ("IR", "Iran"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JE", "Jersey"),
    ("JM", "Jamaica"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KG", "Kyrgyzstan"),
    ("KH", "Cambodia"),
    ("KI", "Kiribati"),
    ("KM", "Comoros"),
    ("KN", "Saint Kitts and Nevis"),
    ("KP", "Korea, Democratic People's Republic of"),
    ("KR", "Korea, Republic of"),
    ("KW", "Kuwait"),
    ("KY", "Cayman Islands"),
    ("KZ", "Kazakhstan"),
    ("LA", "Lao People's Democratic Republic"),
    ("LB", "Lebanon"),
    ("LC", "Saint Lucia"),
    ("LI", "Liechtenstein"),
    ("LK", "Sri Lanka"),
    ("LR", "Liberia"),
    ("LS", "Lesotho"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("LY", "Libya"),
    ("MA", "Morocco"),
    ("MC", "Monaco"),
    ("MD", "Moldova"),
    ("ME", "Montenegro"),
    ("MF", "Saint Martin (French part)"),
    ("MG", "Madagascar"),
    ("MH", "Marshall Islands"),
    ("MK", "North Macedonia"),
    ("ML", "Mali"),
    ("MM", "Myanmar"),
    ("MN", "Mongolia"),
    ("MO", "Macao"),
    ("MP", "Northern Mariana Islands"),
    ("MQ", "Martinique"),
    ("MR", "Mauritania"),
    ("MS", "Montserrat"),
    ("MT", "Malta"),
    ("MU", "Mauritius"),
    ("MV", "Maldives"),
    ("MW", "Malawi"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NA", "Namibia"),
    ("NC", "New Caledonia"),
    ("NE", "Niger"),
    ("NF", "Norfolk Island"),
    ("NG", "Nigeria"),
    ("NI", "Nicaragua"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NP", "Nepal"),
    ("NR", "Nauru"),
    ("NU", "Niue"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PA", "Panama"),
    ("PE", "Peru"),
    ("PF", "French Polynesia"),
    ("PG", "Papua New Guinea"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PM", "Saint Pierre and Miquelon"),
    ("PN", "Pitcairn"),
    ("PR", "Puerto Rico"),
    ("PS", "Palestine, State of"),
    ("PT", "Portugal"),
    ("PW", "Palau"),
    ("PY", "Paraguay"),
    ("QA", "Qatar"),
    ("RE", "Réunion"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("RU", "Russian Federation"),
    ("RW", "Rwanda"),
    ("SA", "Saudi Arabia"),
    ("SB", "Solomon Islands"),
    ("SC", "Seychelles"),
    ("SD", "Sudan"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SH", "Saint Helena, Ascension and Tristan da Cunha"),
    ("SI", "Slovenia"),
    ("SJ", "Svalbard and Jan Mayen"),
    ("SK", "Slovakia"),
    ("SL", "Sierra Leone"),
    ("SM", "San Marino"),
    ("SN", "Senegal"),
    ("SO", "Somalia"),
    ("SR", "Suriname"),
    ("SS", "South Sudan"),
    ("ST", "Sao Tome and Principe"),
    ("SV", "El Salvador"),
    ("SX", "Sint Maarten (Dutch part)"),
    ("SY", "Syrian Arab Republic"),
    ("SZ", "Eswatini"),
    ("TC", "Turks and Caicos Islands"),
    ("TD", "Chad"),
    ("TF", "French Southern Territories"),
    ("TG", "Togo"),
    ("TH", "Thailand"),
    ("TJ", "Tajikistan"),
    ("TK", "Tokelau"),
    ("TL", "Timor-Leste"),
    ("TM", "Turkmenistan"),
    ("TN", "Tunisia"),
    ("TO", "Tonga"),
    ("TR", "Türkiye"),
    ("TT", "Trinidad and Tobago"),
    ("TV", "Tuvalu"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UA", "Ukraine"),
    ("UG", "Uganda"),
    ("UM", "United States Minor Outlying Islands"),
    ("US", "United States"),
    ("UY", "Uruguay"),
    ("UZ", "Uzbekistan"),
    ("VA", "Holy See"),
    ("VC", "Saint Vincent and the Grenadines"),
    ("VE", "Venezuela"),
    ("VG", "Virgin Islands (British)"),
    ("VI", "Virgin Islands (U.S.)"),
    ("VN", "Viet Nam"),
    ("VU", "Vanuatu"),
    ("WF", "Wallis and Futuna"),
    ("WS", "Samoa"),
    ("YE", "Yemen"),
    ("YT", "Mayotte"),
    ("ZA", "South Africa"),
    ("ZM", "Zambia"),
    ("ZW", "Zimbabwe"),
];

/// The 27 member states of the European Union.
pub const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The European Economic Area: the EU plus Iceland, Liechtenstein and Norway.
pub const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS",
    "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The European Free Trade Association.
pub const EFTA: &[&str] = &["CH", "IS", "LI", "NO"];

/// The Five Eyes intelligence alliance (relevant to some sovereignty rules).
pub const FIVE_EYES: &[&str] = &["AU", "CA", "GB", "NZ", "US"];

/// Bloc name, description, members.
pub const BLOCS: &[(&str, &str, &[&str])] = &[
    ("EU", "European Union (27 member states)", EU),
    ("EEA", "European Economic Area (EU plus IS, LI, NO)", EEA),
    (
        "EFTA",
        "European Free Trade Association (CH, IS, LI, NO)",
        EFTA,
    ),
    ("FIVE_EYES", "Five Eyes (AU, CA, GB, NZ, US)", FIVE_EYES),
];

/// Whether `code` is an ISO 3166-1 alpha-2 country code (upper case).
pub fn is_country(code: &str) -> bool {
    COUNTRIES.binary_search_by(|(c, _)| (*c).cmp(code)).is_ok()
}

/// Whether `code` names a bloc.
pub fn is_bloc(code: &str) -> bool {
    BLOCS.iter().any(|(b, _, _)| *b == code)
}

/// Whether `code` is a country code or a bloc.
pub fn is_valid(code: &str) -> bool {
    is_country(code) || is_bloc(code)
}

/// The countries a jurisdiction covers: a bloc's members, a country itself, nothing for
/// an unknown code.
pub fn expand(code: &str) -> Vec<&'static str> {
    if let Some((_, _, members)) = BLOCS.iter().find(|(b, _, _)| *b == code) {
        return members.to_vec();
    }
    COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .map(|i| vec![COUNTRIES[i].0])
        .unwrap_or_default()
}

/// Whether `country` is within any of `allowed` (countries or blocs).
pub fn allows<S: AsRef<str>>(allowed: &[S], country: &str) -> bool {
    allowed
        .iter()
        .any(|a| expand(a.as_ref()).contains(&country))
}

/// The continents of the UN M49 standard (its top-level regions, plus Antarctica),
/// each with its countries' codes: every code of [`COUNTRIES`] is in exactly one.
pub const CONTINENTS: &[(&str, &str)] = &[
    (
        "Africa",
        "DZ AO BJ BW IO BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET TF GA GM GH GN GW KE LS \
         LR LY MG MW ML MR MU YT MA MZ NA NE NG RE RW SH ST SN SC SL SO ZA SS SD TZ TG TN UG EH \
         ZM ZW",
    ),
    (
        "Americas",
        "AI AG AR AW BS BB BZ BM BO BQ BV BR CA KY CL CO CR CU CW DM DO EC SV FK GF GL GD GP GT \
         GY HT HN JM MQ MX MS NI PA PY PE PR BL KN LC MF PM VC SX GS SR TT TC US UY VE VG VI",
    ),
    (
        "Asia",
        "AF AM AZ BH BD BT BN KH CN CY GE HK IN ID IR IQ IL JP JO KZ KW KG LA LB MO MY MV MN MM \
         NP KP OM PK PS PH QA SA SG KR LK SY TW TJ TH TL TR TM AE UZ VN YE",
    ),
    (
        "Europe",
        "AX AL AD AT BY BE BA BG HR CZ DK EE FO FI FR DE GI GR GG VA HU IS IE IM IT JE LV LI LT \
         LU MT MD MC ME NL MK NO PL PT RO RU SM RS SK SI ES SJ SE CH UA GB",
    ),
    (
        "Oceania",
        "AS AU CX CC CK FJ PF GU HM KI MH FM NR NC NZ NU NF MP PW PG PN WS SB TK TO TV UM VU WF",
    ),
    ("Antarctica", "AQ"),
];

/// The continent of a country code (UN M49), `None` for a code that is not a country.
pub fn continent(country: &str) -> Option<&'static str> {
    CONTINENTS
        .iter()
        .find(|(_, codes)| codes.split_whitespace().any(|c| c == country))
        .map(|(name, _)| *name)
}

/// A name for people: `Germany`, `European Union (27 member states)`.
pub fn describe(code: &str) -> Option<&'static str> {
    if let Some((_, d, _)) = BLOCS.iter().find(|(b, _, _)| *b == code) {
        return Some(d);
    }
    COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| COUNTRIES[i].1)
}

/// Why `code` is not a jurisdiction, worded for a validation message.
pub(crate) fn explain_invalid(code: &str, allow_blocs: bool) -> String {
    let upper = code.to_ascii_uppercase();
    if upper != code && (is_country(&upper) || (allow_blocs && is_bloc(&upper))) {
        return format!("{code:?} must be upper case: {upper:?}");
    }
    if !allow_blocs && is_bloc(code) {
        return format!(
            "{code:?} is a bloc; a location is one ISO 3166-1 alpha-2 country code such as DE"
        );
    }
    let hint = if upper == "UK" {
        " (the United Kingdom is GB)"
    } else if upper == "EL" {
        " (Greece is GR)"
    } else {
        ""
    };
    if allow_blocs {
        format!(
            "{code:?} is not an ISO 3166-1 alpha-2 country code or a bloc ({}){hint}",
            BLOCS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("{code:?} is not an ISO 3166-1 alpha-2 country code such as DE{hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_country_is_on_exactly_one_continent() {
        for (code, name) in COUNTRIES {
            let on: Vec<&str> = CONTINENTS
                .iter()
                .filter(|(_, codes)| codes.split_whitespace().any(|c| c == *code))
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(on.len(), 1, "{code} ({name}) is on {on:?}");
        }
        let listed: usize = CONTINENTS
            .iter()
            .map(|(_, codes)| codes.split_whitespace().count())
            .sum();
        assert_eq!(listed, COUNTRIES.len(), "no code that is not a country");
        assert_eq!(continent("DE"), Some("Europe"));
        assert_eq!(continent("SG"), Some("Asia"));
        assert_eq!(continent("EU"), None);
    }

    #[test]
    fn counts_and_order() {
        assert_eq!(COUNTRIES.len(), 249);
        assert!(
            COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
        assert!(COUNTRIES.iter().all(|(c, _)| c.len() == 2));
        assert_eq!(EU.len(), 27);
        assert_eq!(EEA.len(), 30);
        assert_eq!(EFTA.len(), 4);
        assert_eq!(FIVE_EYES.len(), 5);
        for bloc in BLOCS {
            assert!(bloc.2.iter().all(|c| is_country(c)), "{}", bloc.0);
        }
        for c in EU {
            assert!(EEA.contains(c));
        }
        for c in ["IS", "LI", "NO"] {
            assert!(EEA.contains(&c) && !EU.contains(&c));
        }
    }

    #[test]
    fn expand_and_allow() {
        assert_eq!(expand("DE"), vec!["DE"]);
        assert_eq!(expand("EU").len(), 27);
        assert!(expand("XX").is_empty());
        assert!(expand("de").is_empty());
        assert!(allows(&["EU"], "FR"));
        assert!(!allows(&["EU"], "CH"));
        assert!(allows(&["EU", "CH"], "CH"));
        assert!(allows(&["EEA"], "NO"));
        assert!(!allows::<&str>(&[], "DE"));
        assert!(is_valid("FIVE_EYES") && is_valid("GB") && !is_valid("UK"));
        assert_eq!(describe("CH"), Some("Switzerland"));
        assert!(explain_invalid("UK", true).contains("GB"));
        assert!(explain_invalid("de", true).contains("upper case"));
        assert!(explain_invalid("EU", false).contains("bloc"));
    }
}
