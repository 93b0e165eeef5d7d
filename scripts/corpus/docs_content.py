"""Text content of the generated PDF and DOCX fixtures.

All content is original and invented for Mosaic's tests and samples. Every
person, company, place and number below is fictional.

Block types understood by make_corpus.py:
    ("h1", text)      top-level heading   (DOCX style "Heading 1")
    ("h2", text)      section heading     (DOCX style "Heading 2")
    ("p", text)       normal paragraph
    ("bullets", [..]) bulleted list, one paragraph per item
    ("table", [[..], ..]) table; first row is the header

PDF documents are a list of pages (each page a list of blocks); every page is
forced onto its own PDF page, so page numbers in questions.json are stable.
Text is kept ASCII-only so that any PDF text extractor returns it verbatim.
"""

# --------------------------------------------------------------------------
# Test corpus: PDFs
# --------------------------------------------------------------------------

NORDVIK_REPORT = {
    "filename": "annual-report-nordvik-ferries.pdf",
    "title": "Nordvik Ferry Cooperative - Annual Report 2023",
    "author": "Nordvik Ferry Cooperative",
    "subject": "Annual report for the 2023 financial year",
    "pages": [
        [
            ("h1", "Nordvik Ferry Cooperative: Annual Report 2023"),
            ("h2", "Foreword from the chair"),
            ("p", "The Nordvik Ferry Cooperative was founded in 1952 by the islanders of "
                  "Vesterholm and Lunde, who were tired of waiting for the mainland "
                  "shipping companies to give them a reliable winter service. Seventy-one "
                  "years later the cooperative is still owned by the people who use it: at "
                  "the end of 2023 we had 1,930 member households."),
            ("p", "It has been a year of storms and of good news. We carried 387,250 "
                  "passengers and 96,400 vehicles, our highest totals since before the "
                  "pandemic. Our crews kept the islands connected through one of the "
                  "roughest Januaries on record, and the members' meeting in May approved "
                  "the largest investment in the cooperative's history: a new "
                  "battery-electric ferry for the Lunde crossing."),
            ("p", "I want to thank our 118 employees, and especially the deck and engine "
                  "crews who worked double shifts during Storm Ingunn. I also want to thank "
                  "the members who came to the harbour at Vesterholm with coffee and "
                  "waffles for the crews on the night the storm was at its worst."),
            ("p", "Signe Brattvold, Chair of the Board"),
            ("h2", "The year in brief"),
            ("bullets", [
                "Passengers carried: 387,250 (up 6.1 percent on 2022)",
                "Vehicles carried: 96,400",
                "Member households: 1,930",
                "Employees at year end: 118",
                "New ferry ordered: MF Solvind, for delivery in spring 2026",
            ]),
        ],
        [
            ("h1", "Fleet and operations"),
            ("p", "The cooperative operates four vessels on three routes. The flagship MF "
                  "Havorn, built in 2004, carries up to 290 passengers and 48 cars on the "
                  "main crossing between Nordvik and Vesterholm. MF Skarven and MF Tjeld "
                  "share the shorter Lunde route, and the small MF Lundeferja serves the "
                  "outer island of Brekkevik."),
            ("table", [
                ["Vessel", "Built", "Passengers", "Cars", "Route"],
                ["MF Havorn", "2004", "290", "48", "Nordvik - Vesterholm"],
                ["MF Skarven", "1996", "180", "30", "Nordvik - Lunde"],
                ["MF Tjeld", "1989", "150", "24", "Nordvik - Lunde"],
                ["MF Lundeferja", "2011", "60", "8", "Vesterholm - Brekkevik"],
            ]),
            ("h2", "Punctuality and cancellations"),
            ("p", "Across all routes, 96.8 percent of sailings departed within five minutes "
                  "of the timetable. We cancelled 143 sailings because of weather, 97 of "
                  "them during Storm Ingunn in the third week of January, when wind gusts "
                  "at the Vesterholm breakwater reached 41 metres per second."),
            ("p", "The longest crossing in the network is the 47-minute run from "
                  "Vesterholm to Brekkevik. In calm weather MF Lundeferja makes it in 39 "
                  "minutes, but the timetable allows for the strong tidal current in the "
                  "Brekkevik Sound."),
            ("h2", "Maintenance"),
            ("p", "MF Tjeld spent five weeks in dry dock at the Rosvik Yard in October for "
                  "a new propeller shaft and a repainted hull. During that time MF Skarven "
                  "ran the Lunde route alone on a reduced hourly timetable."),
        ],
        [
            ("h1", "Finances"),
            ("p", "Total operating revenue for 2023 was 118.4 million kroner, an increase "
                  "of 7.9 percent. Ticket income made up 71 percent of revenue; the rest "
                  "came from the regional public service contract, freight and the onboard "
                  "kiosks. The operating surplus was 6.2 million kroner."),
            ("table", [
                ["Item (million kroner)", "2023", "2022"],
                ["Ticket income", "84.1", "77.6"],
                ["Public service contract", "26.0", "25.2"],
                ["Freight and kiosks", "8.3", "6.9"],
                ["Total revenue", "118.4", "109.7"],
                ["Operating costs", "112.2", "106.9"],
                ["Operating surplus", "6.2", "2.8"],
            ]),
            ("h2", "Fuel"),
            ("p", "Fuel costs fell by 11 percent compared with 2022, partly because of lower "
                  "marine diesel prices and partly because the crews adopted the eco-speed "
                  "profile on the Lunde route, which saves about 140 litres per day."),
            ("h2", "Member dividend"),
            ("p", "The board proposes a member dividend of 350 kroner per household, paid "
                  "as travel credit on the member card. The remainder of the surplus will "
                  "go to the Solvind building fund, which stood at 21.5 million kroner at "
                  "the end of the year."),
        ],
        [
            ("h1", "Green transition and outlook"),
            ("p", "In May the members' meeting voted 812 to 95 to order a battery-electric "
                  "ferry from the Rosvik Yard. The new vessel, MF Solvind, will replace MF "
                  "Tjeld on the Lunde route. Delivery is planned for spring 2026."),
            ("bullets", [
                "Battery capacity: 4.3 MWh",
                "Capacity: 199 passengers and 34 cars",
                "Charging time at Lunde quay: 9 minutes per round trip",
                "Expected cut in CO2 emissions on the Lunde route: 94 percent",
            ]),
            ("p", "A charging tower will be built on the Lunde quay in 2025, paid for jointly "
                  "by the cooperative and the regional power company Fjordkraft Nord. The "
                  "cooperative's target is to cut total carbon emissions by 60 percent by "
                  "2030 compared with 2019."),
            ("h2", "Outlook for 2024"),
            ("p", "We expect passenger numbers to remain stable. Ticket prices will rise by "
                  "3.5 percent from 1 March 2024, the first increase in two years. The "
                  "annual members' meeting will be held on board MF Havorn on 25 May 2024, "
                  "moored at Vesterholm."),
        ],
    ],
}

AQUAFLUX_MANUAL = {
    "filename": "manual-aquaflux-p260.pdf",
    "title": "AquaFlux P-260 Submersible Garden Pump - Operating Manual",
    "author": "AquaFlux Pumpen GmbH",
    "subject": "Operating manual",
    "pages": [
        [
            ("h1", "AquaFlux P-260 Submersible Garden Pump"),
            ("p", "Operating manual, edition 3. Read all instructions before first use and "
                  "keep this manual for future reference."),
            ("h2", "Intended use"),
            ("p", "The P-260 is a submersible pump for clear or slightly dirty water from "
                  "rainwater butts, cisterns, garden ponds and flooded cellars. It is not "
                  "suitable for salt water, swimming pools with chemicals, drinking water "
                  "or flammable liquids."),
            ("h2", "Technical data"),
            ("table", [
                ["Parameter", "Value"],
                ["Supply voltage", "230 V, 50 Hz"],
                ["Rated power", "550 W"],
                ["Maximum flow rate", "4,200 litres per hour"],
                ["Maximum delivery head", "26 metres"],
                ["Maximum immersion depth", "7 metres"],
                ["Maximum water temperature", "35 C"],
                ["Power cable length", "10 metres"],
                ["Weight without cable", "4.9 kg"],
            ]),
            ("h2", "Safety instructions"),
            ("bullets", [
                "Connect the pump only through a residual current device rated at 30 mA.",
                "Never carry or lift the pump by its power cable; use the handle.",
                "Never run the pump dry for longer than 30 seconds.",
                "Keep children and pets away from the water while the pump is running.",
            ]),
        ],
        [
            ("h1", "Installation"),
            ("p", "Attach a rope to the carrying handle and lower the pump into the water. "
                  "Stand the pump on a firm, level base such as a paving slab, at least 5 "
                  "cm above the bottom of the tank so that it does not suck up sludge."),
            ("h2", "Hose connection"),
            ("p", "The outlet has a 1 inch (33.3 mm) male thread. The supplied stepped "
                  "adapter fits hoses of 25 mm, 19 mm and 13 mm inner diameter. Cut off "
                  "the unused steps of the adapter to reduce flow losses. For a delivery "
                  "head of more than 10 metres, use a hose of at least 19 mm."),
            ("h2", "Float switch"),
            ("p", "The float switch starts the pump when the water rises and stops it when "
                  "the water falls. Clip the float cable into the notch on the handle. At "
                  "the factory setting the pump switches off when the water level falls "
                  "below 9 cm. Lengthening the free float cable raises the switch-on "
                  "level; shortening it lowers the switch-off level."),
            ("p", "For continuous operation in a pond, fix the float switch in the raised "
                  "position with the orange clip marked AF-CLIP. The pump will then run "
                  "until it is unplugged, so make sure the water level cannot fall below "
                  "the intake."),
            ("h2", "Electrical connection"),
            ("p", "The plug and any extension cable must be outdoor rated and kept at least "
                  "2 metres from the edge of the water. Do not use the pump with an "
                  "extension cable longer than 25 metres."),
        ],
        [
            ("h1", "Operation and maintenance"),
            ("p", "Before each use, check that the intake grid is clear and the cable is "
                  "undamaged. Open the tap or hose nozzle before plugging in, so that air "
                  "trapped in the pump can escape."),
            ("h2", "Cleaning the pre-filter"),
            ("p", "The foam pre-filter should be cleaned after every 40 operating hours, or "
                  "sooner if the flow drops noticeably. Twist the intake grid a quarter "
                  "turn anticlockwise, pull out the foam and rinse it under running water. "
                  "Do not use detergents."),
            ("h2", "Impeller"),
            ("p", "If the pump hums but does not deliver water, the impeller may be blocked "
                  "by sand or fibres. Remove the four screws on the pump base, lift off the "
                  "volute and clean the impeller by hand. A worn impeller can be replaced; "
                  "order spare part number AF-IMP-2607 from your dealer."),
            ("h2", "Winter storage"),
            ("p", "Remove the pump from the water before the first frost. Run it for a few "
                  "seconds in a bucket of clean water, let it drain, and store it upright "
                  "in a dry, frost-free room at a temperature above 5 C. Water left inside "
                  "the pump can freeze and crack the housing, which is not covered by the "
                  "warranty."),
        ],
        [
            ("h1", "Troubleshooting and warranty"),
            ("table", [
                ["Problem", "Possible cause", "Remedy"],
                ["Pump does not start", "Float switch in low position", "Raise water level or float"],
                ["Pump stops after a while", "Thermal cut-out tripped", "Unplug and let it cool"],
                ["Low flow", "Pre-filter clogged", "Clean the pre-filter"],
                ["Pump hums, no water", "Impeller blocked", "Clean the impeller"],
            ]),
            ("h2", "Thermal cut-out"),
            ("p", "A thermal cut-out in the motor winding switches the pump off at a winding "
                  "temperature of 95 C, for example when it has run dry. After cooling for "
                  "about 20 minutes the pump restarts by itself, so always unplug it before "
                  "you investigate."),
            ("h2", "Warranty"),
            ("p", "AquaFlux gives a three-year warranty on the P-260 from the date of "
                  "purchase. Register your pump within 28 days of purchase to extend the "
                  "warranty to five years. The warranty does not cover the foam pre-filter, "
                  "the impeller, or damage caused by frost or dry running."),
            ("p", "Manufacturer: AquaFlux Pumpen GmbH, Lindauer Strasse 58, 88412 Kempfeld. "
                  "Customer service hours are Monday to Friday, 08:00 to 16:30."),
        ],
    ],
}

# --------------------------------------------------------------------------
# Test corpus: DOCX
# --------------------------------------------------------------------------

HARROWGATE_POLICY = {
    "filename": "policy-remote-work-harrowgate.docx",
    "title": "Harrowgate Analytics Remote Work Policy",
    "author": "Harrowgate Analytics People Team",
    "blocks": [
        ("h1", "Harrowgate Analytics Remote Work Policy"),
        ("p", "Version 2.3. Owner: Juniper Okonkwo-Hale, Head of People. This policy "
              "explains how and when Harrowgate Analytics employees may work away from our "
              "office on Wharf Street in Leeds."),
        ("h2", "Purpose and scope"),
        ("p", "Harrowgate Analytics is a hybrid company. We believe that focused work "
              "often happens best at home, and that collaboration, mentoring and "
              "celebration happen best in person. This policy applies to all permanent and "
              "fixed-term employees. Contractors should follow the terms of their contract."),
        ("h2", "Eligibility"),
        ("p", "Employees become eligible for remote work once they have completed their "
              "90-day probation period. During probation, new starters are expected in the "
              "office at least three days a week so that they can meet their team and "
              "learn our tools."),
        ("h2", "Anchor days"),
        ("p", "Each team chooses one anchor day per week, on which every member of the "
              "team works from the Wharf Street office. Anchor days are published on the "
              "team calendar at the start of each quarter. The large meeting room on the "
              "fourth floor, called the Harbour Room, is reserved for whole-team sessions "
              "on anchor days and cannot be booked for other purposes."),
        ("h2", "Core collaboration hours"),
        ("p", "Wherever they work, employees should be reachable between 10:30 and 15:00 "
              "UK time, Monday to Friday. Outside these hours, people may arrange their "
              "working time flexibly, provided they agree it with their line manager."),
        ("h2", "Equipment and allowances"),
        ("p", "Every eligible employee may claim a one-off home office allowance of 480 "
              "pounds for a desk, chair, screen or lighting. We also pay a broadband "
              "contribution of 18 pounds per month with the salary. Laptops, headsets and "
              "security keys are provided by the IT team and remain company property."),
        ("h2", "Working from abroad"),
        ("p", "Employees may work from a country other than the United Kingdom for up to "
              "20 working days in each calendar year. Requests must be made at least three "
              "weeks in advance and approved by the Head of People, because working abroad "
              "can have tax and data protection consequences. Working from abroad is never "
              "permitted for roles that handle client health data."),
        ("h2", "Information security"),
        ("p", "All remote work must be done on a company laptop connected through the "
              "Portcullis VPN. Screens must lock automatically after 4 minutes of "
              "inactivity. Client documents must never be printed at home. Report any lost "
              "device to the IT service desk within one hour by calling extension 4040."),
        ("h2", "Wellbeing"),
        ("p", "Working remotely can be isolating. Every employee is offered a monthly "
              "one-to-one walk, called a Wharf Walk, with a colleague from a different "
              "team, organised by the People Team. Employees who feel they are struggling "
              "should speak to their manager or to one of our trained mental health first "
              "aiders."),
        ("h2", "Review"),
        ("p", "This policy is reviewed every September by the People Team together with "
              "the staff forum. The next review is due in September 2025."),
    ],
}

ELDERHOLLOW_MOSSES = {
    "filename": "field-guide-elderhollow-mosses.docx",
    "title": "A Field Guide to the Mosses of the Elderhollow Valley",
    "author": "Elderhollow Bryological Circle",
    "blocks": [
        ("h1", "A Field Guide to the Mosses of the Elderhollow Valley"),
        ("p", "Published by the Elderhollow Bryological Circle. Mosses are easy to overlook "
              "and surprisingly easy to enjoy. This short guide introduces the commonest "
              "and the most remarkable mosses of the valley, with notes on where to find "
              "them and how to record them."),
        ("h2", "About the Circle"),
        ("p", "The Elderhollow Bryological Circle was founded in 1903 by the Reverend "
              "Cuthbert Mossop, vicar of Nether Elderhollow, who kept pressed specimens in "
              "the vestry cupboards until his churchwardens complained. Since then members "
              "have recorded 163 species of moss in the valley, more than in any other "
              "valley of its size in the county."),
        ("h2", "Equipment"),
        ("p", "You need very little: a 10x hand lens worn on a cord around your neck, a "
              "notebook, a pencil and a few small paper packets for specimens. A spray "
              "bottle of water is useful, because many mosses look completely different "
              "when they are wet; dry leaves twist and curl, wet leaves spread out."),
        ("h1", "Species accounts"),
        ("h2", "Golden hollow-moss"),
        ("p", "Golden hollow-moss forms bright yellow-green cushions on shaded limestone. "
              "In the valley it grows only on the north-facing parapet of Pennock Bridge, "
              "where a single colony about the size of a dinner plate has been monitored "
              "since 1931. Please do not touch it."),
        ("h2", "Silver thread-moss"),
        ("p", "A tiny, silvery moss of pavements, wall tops and roofs. Its shoots look like "
              "short grey-white threads because the tips of the leaves lack green "
              "pigment. It tolerates trampling and pollution, and it is often the first "
              "moss a beginner identifies."),
        ("h2", "Drumlin feather-moss"),
        ("p", "A large, feathery moss with regularly branched shoots, common on the floor "
              "of Coldharbour Wood. The shoots grow one new tier each year, so counting the "
              "tiers gives the age of a shoot; the oldest shoot recorded by the Circle had "
              "eleven tiers."),
        ("h2", "Bog bead-moss"),
        ("p", "A red-tinged Sphagnum that forms hummocks in the wettest part of Greyfen "
              "Moss. It can hold up to twenty times its own weight in water. The hummocks "
              "are slowly growing: fixed markers placed in 1988 show a rise of about 14 "
              "centimetres since then."),
        ("h1", "Recording and etiquette"),
        ("p", "Never collect more than a thumbnail-sized sample, and never collect from a "
              "colony smaller than your palm. Records should include the date, the place, "
              "a six-figure grid reference and the substrate (rock, bark, soil or wood)."),
        ("p", "Send your records to the county moss recorder, currently Dr Ottilie "
              "Fairbrass, by 30 November each year so that they can be included in the "
              "Circle's annual bulletin, The Elderhollow Cushion."),
        ("p", "The Circle meets on the first Saturday of every month from October to April. "
              "Field meetings start at 10:00 from the lych gate of Nether Elderhollow "
              "church, and beginners are always welcome."),
    ],
}

CORPUS_PDFS = [NORDVIK_REPORT, AQUAFLUX_MANUAL]
CORPUS_DOCX = [HARROWGATE_POLICY, ELDERHOLLOW_MOSSES]

# --------------------------------------------------------------------------
# Samples (Kestrel Ridge Observatory)
# --------------------------------------------------------------------------

KESTREL_REPORT = {
    "filename": "annual-report-2023.pdf",
    "title": "Kestrel Ridge Observatory - Annual Report 2023",
    "author": "Kestrel Ridge Observatory Trust",
    "subject": "Annual report for 2023",
    "pages": [
        [
            ("h1", "Kestrel Ridge Observatory: Annual Report 2023"),
            ("h2", "Director's summary"),
            ("p", "2023 was the busiest year in the observatory's history. We welcomed 6,412 "
                  "visitors to our public observing nights, school visits and daytime solar "
                  "viewings, up from 4,980 in 2022. Clear skies were kind to us: we recorded "
                  "187 usable observing nights, compared with a ten-year average of 161."),
            ("p", "Our volunteers gave 3,150 hours of their time. Without them, the dome "
                  "would simply stay closed. Thank you to every one of them."),
            ("p", "Dr Imogen Castellanos, Director"),
            ("h2", "Visitors at a glance"),
            ("table", [
                ["Programme", "Visitors 2023"],
                ["Public observing nights", "3,870"],
                ["School visits", "1,604"],
                ["Daytime solar viewing", "938"],
                ["Total", "6,412"],
            ]),
        ],
        [
            ("h1", "Science and research"),
            ("p", "The Harriet, our 0.6 metre reflector, spent 62 nights on research "
                  "programmes run with university partners and amateur networks."),
            ("h2", "Asteroid photometry"),
            ("p", "Volunteer observers submitted 1,280 asteroid position measurements to the "
                  "Minor Planet Center. The most productive observer was Ravi Thorncastle, "
                  "who measured 311 positions on his own."),
            ("h2", "A new variable star"),
            ("p", "In August, student volunteer Lena Oduya noticed that a faint star in the "
                  "constellation Cygnus was changing in brightness every 7.4 hours. Follow-up "
                  "observations confirmed it as an eclipsing binary star. It is listed in "
                  "the observatory's catalogue as KRO-V17, the seventeenth variable star "
                  "discovered at Kestrel Ridge."),
            ("h2", "Sky quality"),
            ("p", "Our sky quality meter recorded a median darkness of 21.6 magnitudes per "
                  "square arcsecond on moonless nights, unchanged from 2022. The new "
                  "shielded street lights in Alder Springs appear to have stopped the slow "
                  "brightening we measured between 2015 and 2020."),
        ],
        [
            ("h1", "Finances and plans"),
            ("p", "The observatory is run by the Kestrel Ridge Observatory Trust, a "
                  "registered charity. Income in 2023 was 214,000 dollars, of which ticket "
                  "sales brought 97,000 dollars and memberships 41,000 dollars. The rest came "
                  "from grants and donations."),
            ("h2", "Plans for 2024"),
            ("bullets", [
                "Replace the dome shutter motor, which is 31 years old.",
                "Add a wheelchair-accessible observing platform beside the Harriet dome.",
                "Start a monthly radio astronomy club using a 3 metre dish donated in 2023.",
            ]),
            ("p", "The dome shutter replacement will close the main dome for three weeks in "
                  "February 2024. The Old Brass refractor will stay open during that time."),
        ],
    ],
}

KESTREL_VOLUNTEERS = {
    "filename": "volunteer-guide.docx",
    "title": "Kestrel Ridge Observatory Volunteer Guide",
    "author": "Kestrel Ridge Observatory Trust",
    "blocks": [
        ("h1", "Kestrel Ridge Observatory Volunteer Guide"),
        ("p", "Welcome, and thank you for volunteering. This guide explains the volunteer "
              "roles at the observatory, the training you will receive and what we expect "
              "of you on a shift."),
        ("h2", "Volunteer roles"),
        ("p", "Docents welcome visitors, give the introductory sky talk in the warm room "
              "and help people at the small telescopes on the terrace."),
        ("p", "Telescope operators run the Harriet and the Old Brass refractor on public "
              "nights. They point the telescopes, manage the queue at the eyepiece and "
              "close the dome safely at the end of the night."),
        ("p", "Facilities volunteers look after the site: clearing snow from the path, "
              "checking the red lighting and keeping the warm room stocked with cocoa."),
        ("h2", "Training"),
        ("p", "Every new volunteer attends an induction evening. New telescope operators "
              "must then complete three supervised nights with an experienced operator "
              "before they may run a telescope alone. Docents shadow a senior docent for "
              "one night."),
        ("h2", "Shifts"),
        ("p", "Public night shifts start 45 minutes before doors open and end when the last "
              "dome is closed, usually around midnight. Sign up for shifts on the volunteer "
              "rota board in the warm room or through the volunteer coordinator, Marguerite "
              "Oyelowo-Banks."),
        ("h2", "On the night"),
        ("p", "Wear warm layers: the ridge is often ten degrees colder than Alder Springs. "
              "Bring only a red torch. If the weather closes in, the duty telescope operator "
              "decides whether to switch to the indoor planetarium show."),
    ],
}

SAMPLE_PDFS = [KESTREL_REPORT]
SAMPLE_DOCX = [KESTREL_VOLUNTEERS]
