package seed

// The raw material of the demo helpdesk: Acme Outfitters sells outdoor gear
// online, and its customers write about what online shoppers write about.
// Placeholders in braces are filled per ticket (see conversation.fill).

// people are the demo account's team. Their password is DemoPassword.
var people = []struct {
	name, email, role string
}{
	{"Olivia Bennett", "olivia@acme-outfitters.example", "owner"},
	{"Marcus Reed", "marcus@acme-outfitters.example", "agent"},
	{"Priya Shah", "priya@acme-outfitters.example", "agent"},
}

var firstNames = []string{
	"Emma", "Liam", "Sofia", "Noah", "Chloé", "Lukas", "Mia", "Mateo", "Hannah", "Ethan",
	"Léa", "Jonas", "Isabella", "Lucas", "Ava", "Finn", "Camille", "Diego", "Grace", "Henrik",
	"Amélie", "Oliver", "Lucía", "Jakob", "Zoe", "Marco", "Nora", "Samuel", "Elena", "Theo",
	"Aisha", "Daniel", "Yuki", "Tom", "Inès", "Felix", "Olivia", "Hugo", "Martina", "Ben",
	"Sara", "Louis", "Freya", "Pablo", "Julia", "Arthur", "Maya", "Emil", "Chiara", "Ryan",
}

var lastNames = []string{
	"Johnson", "Martin", "Müller", "García", "Rossi", "Dubois", "Smith", "Schneider", "López", "Bianchi",
	"Brown", "Bernard", "Fischer", "Fernández", "Romano", "Wilson", "Petit", "Weber", "Moreno", "Colombo",
	"Taylor", "Durand", "Wagner", "Navarro", "Ricci", "Clarke", "Lefebvre", "Becker", "Ortega", "Greco",
	"Hughes", "Moreau", "Hoffmann", "Ruiz", "Marino", "Walker", "Laurent", "Koch", "Castillo", "Conti",
	"Evans", "Girard", "Richter", "Vega", "Gallo", "Turner", "Fontaine", "Wolf", "Herrera", "Costa",
}

// locales pair a language with timezones where its speakers shop from.
var locales = []struct {
	language  string
	timezones []string
}{
	{"en", []string{"America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Australia/Sydney"}},
	{"fr", []string{"Europe/Paris", "America/Montreal", "Europe/Brussels"}},
	{"de", []string{"Europe/Berlin", "Europe/Vienna", "Europe/Zurich"}},
	{"es", []string{"Europe/Madrid", "America/Mexico_City", "America/Bogota"}},
	{"it", []string{"Europe/Rome"}},
}

var emailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com"}

var customerNotes = []string{
	"Prefers email over phone.",
	"Long-time customer, very patient.",
	"Ordered for a group trip; ships to an office address.",
	"Asked not to receive marketing emails.",
	"Had a damaged delivery last season; handle with care.",
	"Runs a scouting troop, orders in bulk before summer.",
	"Writes in short messages from mobile.",
	"Frequently exchanges sizes; check the size chart with them.",
	"",
	"",
}

var products = []string{
	"Trailblazer 45L backpack", "Summit down jacket", "Ridgeline hiking boots", "Merino base layer",
	"Alpine 2-person tent", "Cascade rain shell", "trail running shorts", "insulated water bottle",
	"wool hiking socks (3-pack)", "Beacon 400 headlamp", "Basecamp folding chair", "Granite fleece pullover",
	"Nimbus sleeping bag", "Switchback trekking poles",
}

var sizes = []string{"XS", "S", "M", "L", "XL", "EU 42", "EU 44", "US 9", "US 10.5"}

var carriers = []string{"UPS", "FedEx", "DHL", "USPS", "Colissimo"}

var discountCodes = []string{"SUMMIT15", "WELCOME10", "TRAIL20", "FALLGEAR", "FREESHIP"}

// scenario is one kind of conversation. A ticket picks one and draws its
// subject and messages from it; replies alternate agent and customer.
type scenario struct {
	tags      []string
	subjects  []string
	opening   []string // the customer's first message
	replies   []string // agent answers
	followups []string // the customer writing back
	notes     []string // internal notes between agents
	thanks    []string // the customer closing the loop
	priority  string   // a scenario's usual priority; "" for the common mix
}

var scenarios = []scenario{
	{
		tags:     []string{"order-status", "shipping"},
		subjects: []string{"Where is my order {order}?", "Order {order} status", "Any update on {order}?"},
		opening: []string{
			"Hi, I ordered the {item} on {placed} (order {order}) and haven't received a shipping confirmation yet. Could you check on it?",
			"Hello, my order {order} still shows as processing after {days} days. Is everything OK with it?",
			"Hey there, when will order {order} ship? I need the {item} for a trip next weekend.",
		},
		replies: []string{
			"Hi {first}, thanks for reaching out! Order {order} left our warehouse yesterday with {carrier}, tracking number {tracking}. It should arrive within 2-3 business days.",
			"Hi {first}, I checked order {order}: it was packed this morning and will be handed to {carrier} today. You'll get the tracking link by email tonight.",
			"Thanks for your patience, {first}. The {item} was briefly out of stock, but your order {order} is complete now and ships today.",
		},
		followups: []string{
			"Thanks! The tracking page says 'label created' only. Is that normal?",
			"Great, will it arrive before Friday? I leave on Saturday morning.",
		},
		notes: []string{
			"Checked the WMS: {order} was stuck in the pick queue because of a bin mismatch. Flagged to the warehouse.",
			"Customer has a trip coming up; upgraded shipping to express at no cost.",
		},
		thanks: []string{"Got it today, thank you so much!", "Perfect, thanks for the quick answer."},
	},
	{
		tags:     []string{"returns"},
		subjects: []string{"Return request for {order}", "How do I return the {item}?", "Return label please"},
		opening: []string{
			"Hi, I'd like to return the {item} from order {order}. It doesn't fit the way I hoped. How do I get a return label?",
			"Hello, can I return an item I bought {days} days ago? Order {order}, the {item}, never worn.",
		},
		replies: []string{
			"Hi {first}, no problem at all. I've emailed you a prepaid return label for order {order}. Drop the parcel at any {carrier} point within 30 days.",
			"Hi {first}, items can be returned within 60 days if unused. I've created return RMA-{rma} for the {item}; the label is attached.",
		},
		followups: []string{
			"Thanks. Do I need the original box or is any packaging fine?",
			"I dropped it off today. How long until the refund shows up?",
		},
		notes: []string{
			"Second return from this customer this quarter; fine per policy, just noting it.",
			"Label generated manually, the returns portal timed out.",
		},
		thanks: []string{"Label received, thanks!", "All clear, thank you for the help."},
	},
	{
		tags:     []string{"refund"},
		subjects: []string{"Refund not received for {order}", "Still waiting on my refund", "Refund status"},
		opening: []string{
			"Hi, I returned the {item} two weeks ago and still haven't seen the refund for order {order}. Can you look into it?",
			"Hello, the tracking shows you received my return on {placed} but no refund yet ({amount}).",
		},
		replies: []string{
			"Hi {first}, sorry for the wait. Your return arrived and the refund of {amount} was issued today. Banks usually take 5-10 business days to show it.",
			"Hi {first}, I can see the return for {order} was checked in. I've pushed the refund of {amount} through manually; you'll get a confirmation email shortly.",
		},
		followups: []string{
			"It's been 10 days and I still don't see it. Can you send me a transaction reference?",
			"Is the shipping cost refunded too?",
		},
		notes: []string{
			"Refund failed on the first attempt (card expired). Re-issued as store credit after asking the customer.",
			"Escalated to finance: refund stuck in 'pending' on the payment provider side.",
		},
		thanks:   []string{"It arrived, thank you!", "Found it on my statement, thanks."},
		priority: "high",
	},
	{
		tags:     []string{"sizing", "product-question"},
		subjects: []string{"Sizing question: {item}", "Which size should I order?", "Does the {item} run small?"},
		opening: []string{
			"Hi! I usually wear a {size}. Does the {item} run true to size, or should I size up for layering?",
			"Hello, I'm between two sizes for the {item}. I'm 178 cm and 72 kg, what would you recommend?",
		},
		replies: []string{
			"Hi {first}, the {item} has an athletic fit, so if you plan to layer underneath we recommend one size up. Exchanges are free if it's not right.",
			"Hi {first}, most customers your height choose {size}. The size chart on the product page lists chest and sleeve lengths too.",
		},
		followups: []string{"Thanks, and is the colour on the photos accurate?", "Great, I'll order the {size} then."},
		notes:     []string{"Sizing questions on this item keep coming; suggested adding a fit note to the product page."},
		thanks:    []string{"Ordered, thanks for the advice!", "Thank you!"},
		priority:  "low",
	},
	{
		tags:     []string{"shipping", "delay"},
		subjects: []string{"Package delayed", "{carrier} shows no movement for days", "My parcel is stuck"},
		opening: []string{
			"Hi, my tracking number {tracking} hasn't updated in {days} days. It's been stuck at the {carrier} hub. What's going on?",
			"Hello, order {order} was supposed to arrive on Monday and it's still in transit. I really need it.",
		},
		replies: []string{
			"Hi {first}, I'm sorry about this. {carrier} is running behind in your region this week. I've opened a trace with them and will update you within 48 hours.",
			"Hi {first}, the parcel is confirmed lost by {carrier}. I've sent a replacement by express today, no charge; new tracking: {tracking}.",
		},
		followups: []string{"Any news from {carrier}?", "Thanks. If the first one shows up, should I send it back?"},
		notes: []string{
			"Trace opened with {carrier}, case ref {rma}. Follow up Thursday.",
			"Third delay via this carrier route this week; let ops know.",
		},
		thanks:   []string{"The replacement arrived, thank you!", "It finally arrived, thanks for chasing it."},
		priority: "high",
	},
	{
		tags:     []string{"damaged", "replacement"},
		subjects: []string{"Item arrived damaged", "Broken {item}", "Damaged in transit: {order}"},
		opening: []string{
			"Hi, the {item} from order {order} arrived with a torn seam and the box was crushed. Photos attached. What can you do?",
			"Hello, I opened my package and the {item} is broken. Very disappointed, it was a gift.",
		},
		replies: []string{
			"Hi {first}, I'm so sorry it arrived like that. I've shipped a replacement {item} today; no need to return the damaged one.",
			"Hi {first}, thank you for the photos. Would you prefer a replacement or a full refund of {amount}? Either way you can keep the damaged item.",
		},
		followups: []string{"A replacement please. Could it arrive before the 20th?", "A refund would be best, thanks."},
		notes: []string{
			"Photos show carrier damage; filed a claim with {carrier}.",
			"Replacement sent from the EU warehouse to save time.",
		},
		thanks:   []string{"The replacement is perfect, thank you!", "Refund received. Thanks for making it easy."},
		priority: "high",
	},
	{
		tags:     []string{"discount"},
		subjects: []string{"Discount code {code} not working", "Promo code error at checkout", "Can I still use {code}?"},
		opening: []string{
			"Hi, I tried the code {code} at checkout and it says it's invalid. The newsletter said it's valid until the end of the month.",
			"Hello, I placed order {order} yesterday and forgot to apply {code}. Can you apply it retroactively?",
		},
		replies: []string{
			"Hi {first}, {code} doesn't combine with sale items, which is why it was refused. I've refunded the difference of {amount} as a one-time exception.",
			"Hi {first}, I've applied {code} to order {order} and refunded {amount} to your card.",
		},
		followups: []string{"Thanks! Does it also work on the new collection?"},
		notes:     []string{"Code {code} was misconfigured in the store admin (minimum cart too high). Fixed."},
		thanks:    []string{"Brilliant, thank you!", "Thanks for sorting it out."},
		priority:  "low",
	},
	{
		tags:     []string{"wrong-item", "exchange"},
		subjects: []string{"Wrong item received", "I got the wrong size", "Order {order} mix-up"},
		opening: []string{
			"Hi, I ordered the {item} in {size} but received a different size. Can you swap it?",
			"Hello, the package for order {order} contained someone else's items, not my {item}.",
		},
		replies: []string{
			"Hi {first}, apologies for the mix-up! The correct {item} in {size} ships today, and here is a prepaid label for the wrong one.",
			"Hi {first}, sorry about that. We've sent the right item by express; please return the other one with the enclosed label when you can.",
		},
		followups: []string{"Thank you. Do I need to return the wrong one right away?"},
		notes:     []string{"Picking error at the warehouse; reported to the shift lead."},
		thanks:    []string{"Received the right one, thanks!", "All good now, thank you."},
	},
	{
		tags:     []string{"cancellation"},
		subjects: []string{"Cancel my order {order}", "Please cancel order", "Change of plans: cancel {order}"},
		opening: []string{
			"Hi, can I still cancel order {order}? I ordered the wrong colour of the {item}.",
			"Hello, please cancel my order {order}, I found it locally. Thanks.",
		},
		replies: []string{
			"Hi {first}, done: order {order} is cancelled and the payment of {amount} is released.",
			"Hi {first}, the order had already shipped, so I couldn't cancel it, but I've attached a return label so you won't pay for the return.",
		},
		followups: []string{"Thanks. When will the authorisation disappear from my card?"},
		notes:     []string{"Cancelled in the store admin before the warehouse picked it."},
		thanks:    []string{"Thanks for the quick help!"},
	},
	{
		tags:     []string{"address-change", "shipping"},
		subjects: []string{"Change shipping address for {order}", "Wrong address on my order"},
		opening: []string{
			"Hi, I just noticed I used my old address on order {order}. Could you change it to my new one before it ships?",
		},
		replies: []string{
			"Hi {first}, I caught it in time: order {order} will go to your new address. Could you confirm the postcode?",
			"Hi {first}, the parcel is already with {carrier}. I've requested a redirect; it may take one extra day.",
		},
		followups: []string{"The postcode is correct, thanks!", "OK, thanks for requesting the redirect."},
		notes:     []string{"Address updated in the order and the carrier portal."},
		thanks:    []string{"Received at the new address, thanks!"},
	},
	{
		tags:     []string{"product-question"},
		subjects: []string{"Is the {item} waterproof?", "Question about the {item}", "Care instructions for {item}"},
		opening: []string{
			"Hi, is the {item} fully waterproof or just water resistant? I'm planning a week in Scotland.",
			"Hello, how should I wash the {item}? The label is hard to read.",
		},
		replies: []string{
			"Hi {first}, the {item} is water resistant (DWR coating) with taped seams; it handles steady rain for hours, but not submersion.",
			"Hi {first}, machine wash at 30°C on a gentle cycle, no fabric softener, and tumble dry low to reactivate the coating.",
		},
		followups: []string{"Good to know. Does it come with a stuff sack?"},
		notes:     []string{"Added this answer to the macros for product questions."},
		thanks:    []string{"Thanks, that's very helpful!"},
		priority:  "low",
	},
	{
		tags:     []string{"warranty"},
		subjects: []string{"Warranty claim: {item}", "Broke after a few months", "{item} defect"},
		opening: []string{
			"Hi, the zip on my {item} broke after four months of light use. Is this covered by the warranty?",
			"Hello, the stitching on my {item} is coming apart. I bought it last year (order {order}).",
		},
		replies: []string{
			"Hi {first}, that's covered by our 2-year warranty. Please send the item back with the attached label and we'll repair or replace it.",
			"Hi {first}, sorry to hear it! Could you send a photo of the defect and your order number so I can open the claim?",
		},
		followups: []string{"Photo attached. The order number is {order}.", "Sent it back today."},
		notes:     []string{"Warranty claim approved; replacement rather than repair (parts out of stock)."},
		thanks:    []string{"The replacement is great, thanks!", "Thank you for honouring the warranty."},
	},
}
