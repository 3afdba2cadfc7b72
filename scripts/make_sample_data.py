#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generate Clarity's synthetic sample dataset (data/sample/).

Every question and answer written here is original text produced from the templates and
vocabulary in this file; nothing is taken from QEvasion or any other corpus. The output is
deterministic: running this script twice gives byte-identical files.

Usage:
    python3 scripts/make_sample_data.py           # write data/sample/*, print label counts
    python3 scripts/make_sample_data.py --check   # also train a bag-of-n-grams Naive Bayes
                                                  # on train and report valid/test scores
    python3 scripts/make_sample_data.py --out DIR # write somewhere else

Only the Python 3.11 standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

SEED = 20240611

CR, CNR, AMB = "Clear Reply", "Clear Non-Reply", "Ambivalent"
LABELS = [AMB, CR, CNR]

# Exact label counts per split: about 55% Ambivalent, 30% Clear Reply, 15% Clear Non-Reply.
SPLITS = {
    "train": {AMB: 198, CR: 108, CNR: 54},
    "valid": {AMB: 50, CR: 27, CNR: 13},
    "test": {AMB: 50, CR: 27, CNR: 13},
}

# --------------------------------------------------------------------------------------------
# Vocabulary. Each topic has:
#   actions    (verb phrase, gerund phrase) for yes/no questions
#   policies   noun phrases for "do you support ..." questions
#   quantities (question, answer template, low, high, format) for "how much/many" questions
#   events     (question, answer template) for "when" questions; {date} is filled in
#   news       clauses used in the interviewer's preamble
#   values     general statements of principle (used for over-general answers)
#   record     achievements the speaker likes to talk about (used for dodging)
#   blame      criticism of opponents (used for deflection)
#   jargon     phrases a speaker might ask the interviewer to define
#   people     who the policy is "for"
# --------------------------------------------------------------------------------------------

TOPICS: dict[str, dict] = {
    "economy": {
        "name": "the economy",
        "actions": [
            ("extend the emergency relief payments", "extending the emergency relief payments"),
            ("ask Congress for a second stimulus package", "asking Congress for a second stimulus package"),
            ("reappoint the chair of the central bank", "reappointing the chair of the central bank"),
            ("cut discretionary spending next year", "cutting discretionary spending next year"),
            ("declare an economic emergency in the mill towns", "declaring an economic emergency in the mill towns"),
        ],
        "policies": [
            "a balanced-budget amendment",
            "a cap on credit card interest rates",
            "raising the debt ceiling without conditions",
            "a windfall levy on bank profits",
        ],
        "quantities": [
            ("How large will the deficit be next year", "The deficit will be about {n} billion dollars next year", 300, 1400, "int"),
            ("What growth rate are you forecasting for this year", "We're forecasting growth of {n} percent this year", 12, 41, "pct"),
            ("How much will the relief package cost", "The relief package costs {n} billion dollars over ten years", 90, 900, "int"),
        ],
        "events": [
            ("When will the budget be sent to Congress", "The budget goes to Congress {date}"),
            ("When will the relief checks go out", "The relief checks go out {date}"),
        ],
        "news": [
            "inflation rose again last month",
            "the central bank raised rates for the third time this year",
            "consumer confidence fell to a two-year low",
            "several regional banks have reported heavy losses",
        ],
        "values": [
            "an economy only works when it works for everyone",
            "growth has to reach the middle class, not only the people at the top",
            "we have to be responsible with the public's money",
        ],
        "record": [
            "unemployment is lower today than the day I took office",
            "wages have grown faster than prices for six straight months",
            "small business applications are at a record high",
        ],
        "blame": [
            "the last administration left us a record deficit",
            "the other side spent four years blocking every serious budget",
            "my opponents cut taxes for the wealthy and sent the bill to everyone else",
        ],
        "jargon": ["a soft landing", "fiscal discipline", "structural reform"],
        "people": "working families",
    },
    "healthcare": {
        "name": "health care",
        "actions": [
            ("expand public insurance to everyone over fifty-five", "expanding public insurance to everyone over fifty-five"),
            ("cap the price of insulin", "capping the price of insulin"),
            ("sign the hospital funding bill", "signing the hospital funding bill"),
            ("restore funding for rural clinics", "restoring funding for rural clinics"),
            ("let the government negotiate drug prices", "letting the government negotiate drug prices"),
        ],
        "policies": [
            "a single-payer health system",
            "a public option",
            "the ban on surprise medical bills",
            "importing prescription drugs from abroad",
        ],
        "quantities": [
            ("How many people will lose coverage under the new rule", "Our estimate is that about {n} thousand people lose coverage", 40, 900, "int"),
            ("How much will the insulin cap save patients", "The cap saves the average patient about {n} dollars a year", 300, 2400, "int"),
            ("How many rural hospitals are at risk of closing", "Right now {n} rural hospitals are at risk of closing", 30, 250, "int"),
        ],
        "events": [
            ("When will the new enrolment period open", "Enrolment opens {date}"),
            ("When will the drug price negotiations begin", "The negotiations begin {date}"),
        ],
        "news": [
            "premiums are expected to rise sharply next year",
            "two more rural hospitals announced they are closing",
            "a court struck down part of the insurance law",
            "waiting times in emergency rooms have doubled",
        ],
        "values": [
            "health care is a right, not a privilege",
            "nobody should go bankrupt because they got sick",
            "families deserve to see a doctor when they need one",
        ],
        "record": [
            "more people have insurance today than ever before",
            "we lowered the cost of prescription drugs for seniors",
            "we opened two hundred new community health centres",
        ],
        "blame": [
            "the other party tried to repeal coverage for millions of people",
            "the drug companies have spent millions to stop every reform",
            "my predecessor gutted the programme and left it to collapse",
        ],
        "jargon": ["affordability", "market stabilisation", "universal access"],
        "people": "patients and their families",
    },
    "foreign policy": {
        "name": "foreign policy",
        "actions": [
            ("meet the president of the neighbouring republic", "meeting the president of the neighbouring republic"),
            ("recall our ambassador", "recalling our ambassador"),
            ("impose new sanctions on the regime", "imposing new sanctions on the regime"),
            ("rejoin the regional security pact", "rejoining the regional security pact"),
            ("send the foreign minister to the peace talks", "sending the foreign minister to the peace talks"),
        ],
        "policies": [
            "lifting the arms embargo",
            "the proposed ceasefire agreement",
            "expanding the alliance eastward",
            "a new treaty on nuclear testing",
        ],
        "quantities": [
            ("How much humanitarian aid will you send", "We're sending {n} million dollars in humanitarian aid", 50, 900, "int"),
            ("How many diplomats are being expelled", "We are expelling {n} diplomats", 3, 40, "int"),
        ],
        "events": [
            ("When will you travel to the summit", "I travel to the summit {date}"),
            ("When will the embassy reopen", "The embassy reopens {date}"),
        ],
        "news": [
            "talks with the regime broke down over the weekend",
            "our allies are divided over the new sanctions",
            "the border clashes have intensified",
            "the foreign minister cancelled his visit at the last minute",
        ],
        "values": [
            "we lead best when we lead with our allies",
            "diplomacy has to be backed by strength",
            "our word has to mean something in the world",
        ],
        "record": [
            "we rebuilt our alliances after years of neglect",
            "we brought home every citizen who asked for help",
            "we secured the release of three detained journalists",
        ],
        "blame": [
            "the previous government walked away from our allies",
            "my critics never had a plan for the region",
            "the regime broke every promise it made",
        ],
        "jargon": ["strategic patience", "a reset", "red lines"],
        "people": "our citizens abroad",
    },
    "immigration": {
        "name": "immigration",
        "actions": [
            ("end the family detention policy", "ending the family detention policy"),
            ("raise the refugee ceiling", "raising the refugee ceiling"),
            ("extend protected status for seasonal workers", "extending protected status for seasonal workers"),
            ("build the additional border facilities", "building the additional border facilities"),
            ("sign the bipartisan border bill", "signing the bipartisan border bill"),
        ],
        "policies": [
            "a path to citizenship for people brought here as children",
            "mandatory workplace verification",
            "the new asylum processing rule",
            "cutting the visa backlog by lottery",
        ],
        "quantities": [
            ("How many refugees will be admitted this year", "We will admit up to {n} thousand refugees this year", 15, 125, "int"),
            ("How many new immigration judges will you hire", "We're hiring {n} new immigration judges", 50, 400, "int"),
        ],
        "events": [
            ("When will the new asylum rule take effect", "The asylum rule takes effect {date}"),
            ("When will the border bill come to a vote", "The border bill comes to a vote {date}"),
        ],
        "news": [
            "border crossings rose for the fourth month in a row",
            "the asylum backlog has passed one million cases",
            "several governors are suing over the new rule",
            "farmers say they cannot find enough workers",
        ],
        "values": [
            "we are a nation of laws and a nation of immigrants",
            "a secure border and a fair system go together",
            "people who play by the rules deserve a chance",
        ],
        "record": [
            "we cleared more asylum cases last year than ever before",
            "we hired thousands of new border officers",
            "we reunited hundreds of separated families",
        ],
        "blame": [
            "the other party killed the last border bill for political reasons",
            "my predecessor left the asylum system in chaos",
            "Congress has refused to fix the system for thirty years",
        ],
        "jargon": ["amnesty", "operational control", "chain migration"],
        "people": "families on both sides of the border",
    },
    "energy": {
        "name": "energy",
        "actions": [
            ("release oil from the strategic reserve", "releasing oil from the strategic reserve"),
            ("approve the northern pipeline", "approving the northern pipeline"),
            ("suspend the federal fuel tax", "suspending the federal fuel tax"),
            ("ban new drilling on public land", "banning new drilling on public land"),
            ("keep the nuclear plants open", "keeping the nuclear plants open"),
        ],
        "policies": [
            "a national clean electricity standard",
            "new offshore wind leases",
            "subsidies for home heat pumps",
            "an export ban on natural gas",
        ],
        "quantities": [
            ("How many barrels will you release from the reserve", "We're releasing {n} million barrels from the reserve", 10, 180, "int"),
            ("How much will the fuel tax holiday save drivers", "The holiday saves drivers about {n} cents a gallon", 12, 45, "int"),
        ],
        "events": [
            ("When will the pipeline decision be made", "The pipeline decision will be announced {date}"),
            ("When will the wind lease auction take place", "The wind lease auction takes place {date}"),
        ],
        "news": [
            "petrol prices hit a record high this week",
            "the grid operator warned of blackouts this winter",
            "two refineries shut down for repairs",
            "the utility commission approved another rate increase",
        ],
        "values": [
            "energy independence is national security",
            "we need every source of energy, including the clean ones",
            "families should not have to choose between heating and eating",
        ],
        "record": [
            "domestic production is at an all-time high",
            "we've added more solar capacity than any government before us",
            "home heating assistance reached a million more households",
        ],
        "blame": [
            "the oil companies are making record profits while families pay more",
            "my opponents voted against every investment in the grid",
            "the last government let the reserve run down",
        ],
        "jargon": ["all of the above", "energy dominance", "a just transition"],
        "people": "drivers and homeowners",
    },
    "education": {
        "name": "education",
        "actions": [
            ("cancel student debt for public servants", "cancelling student debt for public servants"),
            ("make community college free", "making community college free"),
            ("raise teacher salaries", "raising teacher salaries"),
            ("keep the schools open this winter", "keeping the schools open this winter"),
            ("veto the school voucher bill", "vetoing the school voucher bill"),
        ],
        "policies": [
            "universal pre-kindergarten",
            "a national curriculum standard",
            "tuition-free public universities",
            "tying school funding to test scores",
        ],
        "quantities": [
            ("How much student debt will be cancelled", "About {n} billion dollars of student debt will be cancelled", 20, 400, "int"),
            ("How many new teachers will the plan fund", "The plan funds {n} thousand new teachers", 10, 120, "int"),
        ],
        "events": [
            ("When will the loan forgiveness applications open", "The applications open {date}"),
            ("When will the new funding reach schools", "The new funding reaches schools {date}"),
        ],
        "news": [
            "test scores dropped for the second year",
            "the teachers' union is threatening to strike",
            "tuition went up by eight percent at state universities",
            "a court blocked the debt relief programme",
        ],
        "values": [
            "every child deserves a good school no matter their postcode",
            "education is the great equaliser",
            "teachers are the backbone of our communities",
        ],
        "record": [
            "we made the largest investment in public schools in a generation",
            "we doubled the maximum student grant",
            "graduation rates are up in every region",
        ],
        "blame": [
            "the other side has been trying to defund public schools for years",
            "the lenders have been squeezing students for decades",
            "my opponent voted against every education budget",
        ],
        "jargon": ["school choice", "accountability", "learning loss"],
        "people": "students and parents",
    },
    "trade": {
        "name": "trade",
        "actions": [
            ("lift the tariffs on steel", "lifting the tariffs on steel"),
            ("sign the Pacific trade agreement", "signing the Pacific trade agreement"),
            ("file a complaint at the trade tribunal", "filing a complaint at the trade tribunal"),
            ("impose tariffs on imported cars", "imposing tariffs on imported cars"),
            ("renegotiate the agreement with our northern neighbour", "renegotiating the agreement with our northern neighbour"),
        ],
        "policies": [
            "a permanent tariff on foreign steel",
            "the new agreement with the southern trading bloc",
            "fast-track trade authority",
            "buy-local rules for government contracts",
        ],
        "quantities": [
            ("How high will the new tariffs be", "The new tariffs will be {n} percent", 5, 35, "int"),
            ("How much is the trade deficit expected to fall", "We expect the trade deficit to fall by {n} billion dollars", 10, 140, "int"),
        ],
        "events": [
            ("When will the new tariffs take effect", "The new tariffs take effect {date}"),
            ("When will the trade agreement be signed", "The agreement will be signed {date}"),
        ],
        "news": [
            "our trading partners have threatened to retaliate",
            "farm exports fell by a third this year",
            "the steel mills say they cannot compete",
            "the trade deficit widened again last quarter",
        ],
        "values": [
            "trade has to be fair, not just free",
            "our workers can compete with anyone on a level playing field",
            "we will always put our own workers first",
        ],
        "record": [
            "exports reached a record last year",
            "we brought back thousands of manufacturing jobs",
            "we won every case we filed at the trade tribunal",
        ],
        "blame": [
            "the old agreements sold out our workers",
            "the other side shipped our factories overseas",
            "our competitors have been cheating for years",
        ],
        "jargon": ["reciprocity", "a level playing field", "decoupling"],
        "people": "farmers and factory workers",
    },
    "defence": {
        "name": "defence",
        "actions": [
            ("send more troops to the eastern border", "sending more troops to the eastern border"),
            ("increase the defence budget", "increasing the defence budget"),
            ("close the overseas base", "closing the overseas base"),
            ("supply long-range missiles to our partners", "supplying long-range missiles to our partners"),
            ("bring the peacekeepers home this year", "bringing the peacekeepers home this year"),
        ],
        "policies": [
            "restoring the military draft",
            "the new fighter jet programme",
            "a ban on autonomous weapons",
            "cutting the nuclear arsenal",
        ],
        "quantities": [
            ("How many troops will be deployed", "We are deploying {n} troops", 3, 60, "hundreds"),
            ("How much will the new defence package cost", "The package costs {n} billion dollars", 5, 120, "int"),
        ],
        "events": [
            ("When will the troops come home", "The troops come home {date}"),
            ("When will the defence review be published", "The defence review will be published {date}"),
        ],
        "news": [
            "two of our ships were harassed in international waters",
            "the generals have asked for more funding",
            "recruitment fell short of its target again",
            "our allies are increasing their own spending",
        ],
        "values": [
            "our first duty is to keep this country safe",
            "peace comes through strength",
            "we owe our service members everything",
        ],
        "record": [
            "we gave our troops the biggest pay rise in a decade",
            "we modernised the navy ahead of schedule",
            "we ended the longest deployment in our history",
        ],
        "blame": [
            "the last government hollowed out our armed forces",
            "my critics would have us walk away from our allies",
            "the other party played politics with the defence budget",
        ],
        "jargon": ["deterrence", "force posture", "escalation dominance"],
        "people": "our service members",
    },
    "climate": {
        "name": "climate change",
        "actions": [
            ("declare a national climate emergency", "declaring a national climate emergency"),
            ("rejoin the international climate accord", "rejoining the international climate accord"),
            ("phase out coal power by the end of the decade", "phasing out coal power by the end of the decade"),
            ("put a price on carbon", "putting a price on carbon"),
            ("ban the sale of new petrol cars", "banning the sale of new petrol cars"),
        ],
        "policies": [
            "a carbon tax with a dividend",
            "the new vehicle emissions standard",
            "a ban on fracking",
            "protecting thirty percent of our land and water",
        ],
        "quantities": [
            ("By how much will emissions fall under the plan", "Under the plan emissions fall by {n} percent", 20, 60, "int"),
            ("How much will you pledge to the climate fund", "We're pledging {n} billion dollars to the climate fund", 1, 12, "int"),
        ],
        "events": [
            ("When will the emissions standard take effect", "The emissions standard takes effect {date}"),
            ("When will the climate plan be released", "The climate plan will be released {date}"),
        ],
        "news": [
            "this summer was the hottest on record",
            "wildfires forced thousands from their homes",
            "the scientists say we are falling behind our targets",
            "the flooding in the south caused billions in damage",
        ],
        "values": [
            "climate change is the challenge of our time",
            "we owe our children a liveable planet",
            "clean energy is the biggest economic opportunity of the century",
        ],
        "record": [
            "we made the largest climate investment in history",
            "emissions fell every year I've been in office",
            "we created thousands of clean energy jobs",
        ],
        "blame": [
            "the other side still denies the science",
            "the polluters have been writing the rules for too long",
            "the last government pulled us out of every agreement",
        ],
        "jargon": ["net zero", "carbon neutrality", "green growth"],
        "people": "our children and grandchildren",
    },
    "jobs": {
        "name": "jobs",
        "actions": [
            ("raise the minimum wage", "raising the minimum wage"),
            ("extend unemployment benefits", "extending unemployment benefits"),
            ("save the jobs at the assembly plant", "saving the jobs at the assembly plant"),
            ("expand the apprenticeship programme", "expanding the apprenticeship programme"),
            ("intervene in the rail strike", "intervening in the rail strike"),
        ],
        "policies": [
            "a fifteen-dollar minimum wage",
            "a four-day working week",
            "the right-to-work law",
            "a federal jobs guarantee",
        ],
        "quantities": [
            ("How many jobs will the plan create", "The plan creates about {n} thousand jobs", 100, 900, "int"),
            ("What will the new minimum wage be", "The new minimum wage will be {n} dollars an hour", 11, 18, "int"),
        ],
        "events": [
            ("When will the minimum wage increase take effect", "The increase takes effect {date}"),
            ("When will the apprenticeship programme open", "The apprenticeship programme opens {date}"),
        ],
        "news": [
            "the assembly plant announced two thousand layoffs",
            "the rail unions voted to strike",
            "job growth slowed sharply last month",
            "the unemployment rate ticked up for the first time in a year",
        ],
        "values": [
            "a good job is about dignity, not just a paycheque",
            "anyone who works full time should not live in poverty",
            "our workers built this country",
        ],
        "record": [
            "we created more jobs in two years than the last government did in four",
            "manufacturing employment is at a twenty-year high",
            "we have the lowest unemployment rate in half a century",
        ],
        "blame": [
            "the companies shipped those jobs overseas to boost their profits",
            "my opponents blocked the jobs bill three times",
            "the last government stood by while factories closed",
        ],
        "jargon": ["a living wage", "labour flexibility", "reshoring"],
        "people": "working people",
    },
    "taxes": {
        "name": "taxes",
        "actions": [
            ("raise taxes on people earning under four hundred thousand dollars", "raising taxes on people earning under four hundred thousand dollars"),
            ("cut the corporate tax rate", "cutting the corporate tax rate"),
            ("repeal the inheritance tax", "repealing the inheritance tax"),
            ("close the carried interest loophole", "closing the carried interest loophole"),
            ("double the child tax credit", "doubling the child tax credit"),
        ],
        "policies": [
            "a wealth tax on billionaires",
            "a flat income tax",
            "a minimum tax on large corporations",
            "a national sales tax",
        ],
        "quantities": [
            ("What will the new top tax rate be", "The top rate will be {n} percent", 33, 45, "int"),
            ("How much will the tax cut cost", "The tax cut costs {n} billion dollars over ten years", 200, 1900, "int"),
            ("How much will a typical family save", "A typical family saves about {n} dollars a year", 400, 3200, "int"),
        ],
        "events": [
            ("When will the tax bill be introduced", "The tax bill will be introduced {date}"),
            ("When will families receive the new credit", "Families receive the new credit {date}"),
        ],
        "news": [
            "the budget office says your plan adds to the deficit",
            "several large companies paid no tax at all last year",
            "the tax agency is facing a huge backlog",
            "your own advisers are split on the tax plan",
        ],
        "values": [
            "everyone should pay their fair share",
            "the tax code should reward work, not wealth",
            "families should keep more of what they earn",
        ],
        "record": [
            "we cut taxes for ninety percent of families",
            "we made the child tax credit fully refundable",
            "we closed loopholes worth billions",
        ],
        "blame": [
            "the last tax law was a giveaway to the richest one percent",
            "the other side wants to cut taxes for billionaires and pay for it with cuts to pensions",
            "the big corporations hired armies of lobbyists to protect their loopholes",
        ],
        "jargon": ["fair share", "tax simplification", "revenue neutral"],
        "people": "middle-class families",
    },
    "infrastructure": {
        "name": "infrastructure",
        "actions": [
            ("fund the new bridge across the river", "funding the new bridge across the river"),
            ("build the high-speed rail line", "building the high-speed rail line"),
            ("replace every lead water pipe", "replacing every lead water pipe"),
            ("bring broadband to every rural home", "bringing broadband to every rural home"),
            ("sign the highway bill", "signing the highway bill"),
        ],
        "policies": [
            "a national infrastructure bank",
            "tolls on the interstate highways",
            "the public-private partnership for the ports",
            "a gas tax increase to fund the roads",
        ],
        "quantities": [
            ("How much will the infrastructure plan cost", "The plan costs {n} billion dollars", 200, 2000, "int"),
            ("How many bridges will be repaired", "We will repair {n} thousand bridges", 5, 45, "int"),
        ],
        "events": [
            ("When will construction on the bridge begin", "Construction begins {date}"),
            ("When will the rail line open", "The rail line opens {date}"),
        ],
        "news": [
            "a bridge collapsed in the capital last week",
            "the water system failed again in the eastern cities",
            "the rail project is three years behind schedule",
            "engineers gave our roads a failing grade",
        ],
        "values": [
            "we used to build things in this country, and we will again",
            "modern infrastructure is the foundation of a modern economy",
            "every community deserves clean water and safe roads",
        ],
        "record": [
            "we passed the largest infrastructure law in sixty years",
            "we've started work on thousands of projects",
            "we connected a million homes to high-speed internet",
        ],
        "blame": [
            "the last government promised an infrastructure week every week and built nothing",
            "my opponents voted against fixing the roads in their own districts",
            "decades of neglect left our bridges crumbling",
        ],
        "jargon": ["shovel-ready", "asset recycling", "resilience"],
        "people": "commuters and communities",
    },
    "housing": {
        "name": "housing",
        "actions": [
            ("extend the eviction moratorium", "extending the eviction moratorium"),
            ("build a million new homes", "building a million new homes"),
            ("give first-time buyers a down payment grant", "giving first-time buyers a down payment grant"),
            ("limit rent increases in public housing", "limiting rent increases in public housing"),
            ("ban foreign buyers from the housing market", "banning foreign buyers from the housing market"),
        ],
        "policies": [
            "national rent control",
            "ending single-family zoning",
            "a tax on empty homes",
            "the new mortgage guarantee scheme",
        ],
        "quantities": [
            ("How many affordable homes will you build", "We will build {n} thousand affordable homes", 100, 900, "int"),
            ("How large will the down payment grant be", "The grant will be {n} thousand dollars", 10, 25, "int"),
        ],
        "events": [
            ("When will the eviction moratorium end", "The moratorium ends {date}"),
            ("When will the grant applications open", "Grant applications open {date}"),
        ],
        "news": [
            "rents rose by twelve percent this year",
            "homelessness has reached a record level",
            "mortgage rates are at their highest in two decades",
            "the housing agency missed its construction targets",
        ],
        "values": [
            "a safe, affordable home is the foundation of everything",
            "young people should be able to buy their first home",
            "nobody should be one paycheque away from the street",
        ],
        "record": [
            "we built more homes last year than in any year this century",
            "we helped two hundred thousand families avoid eviction",
            "homeownership among young people is finally rising",
        ],
        "blame": [
            "the speculators have turned homes into investments",
            "local councils keep blocking new construction",
            "the last government sold off public housing",
        ],
        "jargon": ["affordability", "supply-side reform", "missing middle housing"],
        "people": "renters and young families",
    },
    "public safety": {
        "name": "public safety",
        "actions": [
            ("hire more police officers", "hiring more police officers"),
            ("sign the assault weapons ban", "signing the assault weapons ban"),
            ("pardon people convicted of minor drug offences", "pardoning people convicted of minor drug offences"),
            ("send federal agents to the city", "sending federal agents to the city"),
            ("fund the community violence programmes", "funding the community violence programmes"),
        ],
        "policies": [
            "universal background checks",
            "ending cash bail",
            "a national police misconduct registry",
            "mandatory minimum sentences",
        ],
        "quantities": [
            ("How many officers will the grant pay for", "The grant pays for {n} thousand officers", 5, 100, "int"),
            ("How much funding will go to violence prevention", "We're putting {n} million dollars into violence prevention", 100, 900, "int"),
        ],
        "events": [
            ("When will the police reform bill be signed", "I'll sign the police reform bill {date}"),
            ("When will the agents arrive", "The agents arrive {date}"),
        ],
        "news": [
            "violent crime rose in several large cities",
            "there was another mass shooting on Saturday",
            "the police union says officers are leaving in record numbers",
            "the mayor has asked for federal help",
        ],
        "values": [
            "every family deserves to feel safe in their own neighbourhood",
            "public safety and justice go hand in hand",
            "we support the police and we demand accountability",
        ],
        "record": [
            "murders fell last year in most of our largest cities",
            "we put more officers on the street than any government in a decade",
            "we funded violence prevention in three hundred communities",
        ],
        "blame": [
            "the other side wants to defund the programmes that work",
            "the gun lobby has blocked every sensible reform",
            "the last government cut the grants to local police",
        ],
        "jargon": ["law and order", "defunding", "community policing"],
        "people": "families in every neighbourhood",
    },
}

DATES = [
    "by the end of the month", "before the summer recess", "on the first of March",
    "next Tuesday", "within ninety days", "by the end of the year", "in April",
    "on the fifteenth of June", "next week", "before the end of the quarter",
    "on Monday", "in the first week of September", "by January", "this Friday",
    "on the second of October", "within thirty days",
]

# Vague timing, which does not answer a "when" question.
VAGUE_DATES = [
    "soon", "in the coming weeks", "when it's ready", "sooner than people think",
    "at the right time", "as quickly as we responsibly can", "very soon, I hope",
]

REASONS_NO = [
    "It would cost too much and it would not work.",
    "It's the wrong policy at the wrong time.",
    "We looked at it carefully and the numbers don't add up.",
    "It would hurt the very people it's meant to help.",
    "We have a better plan.",
    "The evidence just isn't there.",
]

REASONS_YES = [
    "It's the right thing to do.",
    "The evidence is clear that it works.",
    "People have waited long enough.",
    "It pays for itself within a few years.",
    "We promised it, and we're delivering it.",
]

SOURCES = ["the budget office", "our own economists", "the treasury", "the independent auditors",
           "the department's analysts"]

ADDRESSES = [
    "Mr. President, ", "Madam President, ", "Mr. Secretary, ", "Prime Minister, ",
    "Governor, ", "Senator, ", "Sir, ", "Madam Secretary, ", "", "", "",
]

# Names (invented) for "who" questions.
NAMES = [
    "Secretary Alvarez", "Dr. Amélie Laurent", "Minister Søndergaard", "Director Okafor",
    "Ambassador Lindqvist", "General Mbeki-Hart", "Judge Renata Costa", "Mayor Tobias Wren",
    "Commissioner Ngata", "Dr. Priya Raman",
]
ROLES = [
    "the review", "the new task force", "the negotiating team", "the independent inquiry",
    "the implementation office",
]

# Shared phrases: these appear in answers of every label.
OPENERS = [
    "Look,", "Well,", "Listen,", "Let me be clear.", "Let me say this.", "That's a fair question.",
    "Thank you for the question.", "I appreciate the question.", "As I said yesterday,",
    "Look —", "First of all,", "Here's the thing.", "I'll be honest with you.",
]
# Fillers that can open an answer, and fillers that follow what was said.
FILLERS_PRE = [
    "I know people are frustrated.",
    "I've talked to a lot of people about this.",
    "We take this very seriously.",
    "People across the country are watching this.",
    "Nothing about {topic} is simple.",
    "This is an important question.",
    "I've thought about this a great deal.",
]
FILLERS_POST = [
    "This matters to {people}.",
    "We've been working on this since day one.",
    "That's where we are.",
    "And I mean that.",
    "It's not easy, but it's important.",
    "My team has been on it around the clock.",
    "I said this during the campaign and I'll say it again.",
    "People should know that.",
]
CLOSERS = ["Thank you.", "Next question.", "So that's my answer.", "Okay?", "That's all.",
           "All right."]

KEEP_CASE = {"I", "I'm", "I've", "I'll", "I'd", "Congress", "Congress,"} | {n.split()[0] for n in NAMES}


def lc_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    if first in KEEP_CASE:
        return s
    return s[0].lower() + s[1:]


def uc_first(s: str) -> str:
    return s[0].upper() + s[1:]


def n_sentences(sents: list[str]) -> int:
    return sum(len(re.findall(r"[.?!](?:\s|$)", s)) for s in sents)


def fmt_number(n: int, kind: str) -> str:
    if kind == "pct":
        return f"{n / 10:.1f}"
    if kind == "hundreds":
        return f"{n * 100:,}"
    return str(n)


# --------------------------------------------------------------------------------------------
# Sub-questions
# --------------------------------------------------------------------------------------------

class SubQ:
    """One specific question, with what a direct answer needs to say."""

    def __init__(self, kind: str, text: str, topic: str, **kw):
        self.kind = kind          # yesno | support | quantity | event | who
        self.text = text          # the question, ending with "?"
        self.topic = topic
        self.kw = kw
        # What is being asked about, to avoid asking the same thing twice in one turn.
        self.key = kw.get("action") or kw.get("policy") or kw.get("qtext") or kw.get("role")


YESNO_FORMS = [
    "Will you {a}?", "Are you going to {a}?", "Is the government prepared to {a}?",
    "Would you {a} if Congress refuses to act?", "Can you commit today to {a}?",
    "Do you intend to {a}?", "Have you decided to {a}?", "Will your administration {a}?",
]
SUPPORT_FORMS = [
    "Do you support {p}?", "Are you in favour of {p}?", "Would you back {p}?",
    "Where do you stand on {p}?", "Would you sign a bill for {p}?",
    "Do you personally support {p}?",
]
WHO_FORMS = ["Who will lead {r}?", "Who have you chosen to head {r}?", "Who is going to run {r}?"]


def make_subq(rng: random.Random, topic: str) -> SubQ:
    t = TOPICS[topic]
    kind = rng.choices(["yesno", "support", "quantity", "event", "who"], [34, 22, 20, 16, 8])[0]
    if kind == "yesno":
        a, g = rng.choice(t["actions"])
        return SubQ(kind, rng.choice(YESNO_FORMS).format(a=a), topic, action=a, gerund=g)
    if kind == "support":
        p = rng.choice(t["policies"])
        return SubQ(kind, rng.choice(SUPPORT_FORMS).format(p=p), topic, policy=p)
    if kind == "quantity":
        q, ans, lo, hi, nk = rng.choice(t["quantities"])
        n = fmt_number(rng.randint(lo, hi), nk)
        return SubQ(kind, q + "?", topic, answer=ans.format(n=n), qtext=q)
    if kind == "event":
        q, ans = rng.choice(t["events"])
        return SubQ(kind, q + "?", topic, answer=ans.format(date=rng.choice(DATES)), qtext=q)
    r = rng.choice(ROLES) + " on " + t["name"]
    return SubQ(kind, rng.choice(WHO_FORMS).format(r=r), topic, role=r, name=rng.choice(NAMES))


def interview_question(rng: random.Random, target: SubQ) -> tuple[str, list[SubQ]]:
    """The full interviewer turn, containing the target sub-question and maybe others."""
    t = TOPICS[target.topic]
    k = rng.choices([0, 1, 2], [40, 38, 22])[0]
    others: list[SubQ] = []
    while len(others) < k:
        o = make_subq(rng, target.topic if rng.random() < 0.75 else rng.choice(list(TOPICS)))
        if o.key != target.key and all(o.key != x.key for x in others):
            others.append(o)
    subqs = others + [target]
    rng.shuffle(subqs)
    parts: list[str] = []
    addr = rng.choice(ADDRESSES)
    if rng.random() < 0.65:
        news = rng.choice(t["news"])
        pre = rng.choice([
            "{N}.", "There are reports that {n}.", "Many people are worried because {n}.",
            "On {topic}: {n}.", "We learned this morning that {n}.", "As you know, {n}.",
            "Your critics point out that {n}.",
        ]).format(N=uc_first(news), n=news, topic=t["name"])
        parts.append(pre)
    if len(subqs) > 1 and rng.random() < 0.3:
        parts.append(rng.choice(["Two questions.", "A couple of questions.", "Quick follow-up."]))
    for i, q in enumerate(subqs):
        text = q.text
        if i > 0 and rng.random() < 0.5:
            text = rng.choice(["And ", "Also, ", "And secondly, "]) + lc_first(text)
        parts.append(text)
    full = " ".join(parts)
    if addr:
        full = addr + lc_first(full)
    return full, [q for q in subqs if q is not target]


# --------------------------------------------------------------------------------------------
# Answers. Each returns the "body" sentences; shared openers / fillers are added afterwards.
# --------------------------------------------------------------------------------------------

def direct_answer(rng: random.Random, q: SubQ) -> list[str]:
    """A clear, explicit answer to q."""
    if q.kind == "yesno":
        a = q.kw["action"]
        if rng.random() < 0.62:
            s = rng.choice([
                "Yes. We will {a} {d}.", "Yes, I will.", "Yes, we're going to {a}.",
                "The answer is yes. I intend to {a}, and I've told my team to get it done {d}.",
                "I will {a}. I made that commitment during the campaign and I'm keeping it.",
                "Absolutely. We'll {a} {d}.", "We are going to {a}. That decision has been made.",
                "Yes. I signed the order this morning, and we will {a} {d}.",
                "Yes, we will, and it will happen {d}.", "Of course. We'll {a} {d}.",
                "Definitely. The order is drafted and we will {a}.",
            ]).format(a=a, d=rng.choice(DATES))
            out = [s]
            if rng.random() < 0.4:
                out.append(rng.choice(REASONS_YES))
        else:
            s = rng.choice([
                "No. We are not going to {a}.", "No, I won't {a}.", "We will not {a}.",
                "The answer is no.", "That's not going to happen. I'm not going to {a}.",
                "I've decided against it. We won't {a}.", "No. I won't do that.",
                "No, and I've told my cabinet the same thing.", "Not a chance.",
                "Never. Not while I'm in this job.",
            ]).format(a=a)
            out = [s]
            if rng.random() < 0.55:
                out.append(rng.choice(REASONS_NO))
        return out
    if q.kind == "support":
        p = q.kw["policy"]
        if rng.random() < 0.55:
            s = rng.choice([
                "Yes, I support {p}.", "I do. I've supported {p} for years.",
                "I'm in favour of it, and I'd sign it tomorrow.", "I support it.",
                "I strongly support {p}.", "Yes. I'm for it.",
            ]).format(p=p)
            out = [s]
            if rng.random() < 0.5:
                out.append(rng.choice(REASONS_YES))
        else:
            s = rng.choice([
                "No, I don't support {p}.", "I oppose it.", "I'm against {p}, and I'd veto it if it reached my desk.",
                "I don't support it, and I've said so publicly.", "No. I'm against it.",
                "I've opposed {p} my whole career and that hasn't changed.",
            ]).format(p=p)
            out = [s]
            if rng.random() < 0.5:
                out.append(rng.choice(REASONS_NO))
        return out
    if q.kind in ("quantity", "event"):
        ans = q.kw["answer"]
        lead = rng.choice(["", "", "", "I can tell you exactly. ", "The answer is simple. ",
                           "Here's the figure. " if q.kind == "quantity" else "Here's the date. "])
        out = [lead + ans + "."]
        if q.kind == "quantity" and rng.random() < 0.45:
            out.append(f"That figure comes from {rng.choice(SOURCES)}.")
        elif q.kind == "event" and rng.random() < 0.35:
            out.append(rng.choice(["That date is fixed.", "It's on the calendar.",
                                   "The paperwork is already signed."]))
        return out
    # who
    name = q.kw["name"]
    return [rng.choice([
        "{n} will lead it.", "I've asked {n} to lead it, and {n} starts on Monday.",
        "It will be {n}.", "{n}. The announcement goes out this afternoon.",
        "I've chosen {n}. There's nobody better qualified.",
    ]).format(n=name)]


BORDERLINE_CR = [
    "We've already started the work to {a}.", "The money to {a} is already in the budget.",
    "I've said for years that we need to {a}, and I meant it.",
]


def clear_reply(rng: random.Random, q: SubQ, others: list[SubQ]) -> list[str]:
    t = TOPICS[q.topic]
    if q.kind == "yesno" and rng.random() < 0.15:
        # Borderline (a judgement call, as in real annotation): an implicit "yes" that the
        # annotator took as explicit enough. The same sentences also occur as Ambivalent.
        return [rng.choice(BORDERLINE_CR).format(a=q.kw["action"])]
    body = direct_answer(rng, q)
    r = rng.random()
    if r < 0.08 and q.kind in ("yesno", "support"):
        # Harder: starts like a hedge, then commits.
        lead = rng.choice(["We looked at all the options, and we've made a decision.",
                           "We'll see what Congress does, but my position is settled.",
                           "It's been under review for months, and the review is done."])
        body = [lead] + body
    elif r < 0.30:
        # Harder: general talk first, then the direct answer.
        pre = [uc_first(rng.choice(t["values"])) + "."]
        if rng.random() < 0.5:
            pre.append(uc_first(rng.choice(t["record"])) + ".")
        joiner = rng.choice(["But to answer your question directly, ", "So to your question: ",
                             "But on the specific question, ", "So, ", "Now, to answer you, "])
        body = pre + [joiner + lc_first(body[0])] + body[1:]
    elif r < 0.40 and others:
        # Answers the other sub-questions as well.
        body = body + direct_answer(rng, rng.choice(others))
    elif r < 0.48:
        body = body + [uc_first(rng.choice(t["record"])) + "."]
    return body


def non_reply(rng: random.Random, q: SubQ) -> list[str]:
    t = TOPICS[q.topic]
    thing = {
        "yesno": q.kw.get("gerund"), "support": q.kw.get("policy"), "who": q.kw.get("role"),
        "quantity": "the exact figure", "event": "the timing",
    }[q.kind]
    if rng.random() < 0.08:
        # Borderline: a non-committal line that gives no information at all; the same
        # sentences also occur as Ambivalent.
        return [rng.choice(["That's under review.", "We're looking at all the options.",
                            "We'll see what happens.", "It's one of the things we're discussing."])]
    sub = rng.choices(["decline", "ignorance", "clarify"], [45, 30, 25])[0]
    if sub == "decline":
        s = rng.choice([
            "I'm not going to comment on that.", "I'm not going to get into {x} today.",
            "I won't speculate about that.", "I'm not going to negotiate in public.",
            "That's a decision I'll announce at the appropriate time, not today.",
            "I don't talk about internal deliberations.", "I'm not going to answer hypotheticals.",
            "I have nothing to add on that.", "I'm not going to say anything about {x} right now.",
            "I'm not in a position to discuss that.", "You'll understand if I don't answer that.",
            "I'll leave it there.", "No comment on that one.",
            "I'm not going to share that with you today.",
        ]).format(x=thing)
        out = [s]
        if rng.random() < 0.4:
            out.append(rng.choice([
                "When I have something to say, I'll say it.", "That's all I'll say about it.",
                "It wouldn't be appropriate.", "We'll have more to say in the coming days.",
                "You'll hear from us at the right time.",
            ]))
    elif sub == "ignorance":
        s = rng.choice([
            "I don't know.", "I haven't seen that report.", "I honestly don't know the details of that.",
            "I'd have to check the numbers; I don't have them with me.",
            "I haven't been briefed on that yet.", "That's the first I've heard of it.",
            "I'm not familiar with the specifics of {x}.", "I don't have that figure in front of me.",
            "You'd know more about that than I do.", "I genuinely don't know the answer to that.",
            "I haven't read the proposal, so I can't tell you.",
        ]).format(x=thing)
        out = [s]
        if rng.random() < 0.45:
            out.append(rng.choice([
                "I'll have my staff get back to you.", "Let me find out and we'll let you know.",
                "Somebody on my team can follow up.", "I'd need to look into it.",
            ]))
    else:
        j = rng.choice(t["jargon"])
        s = rng.choice([
            "What do you mean by {j}?", "Which proposal are you talking about?",
            "I'm sorry, I didn't catch the question. Could you repeat it?",
            "When you say {j}, what exactly do you mean?", "Do you mean this year or next year?",
            "Are you asking about {x} or about the broader plan?",
            "Which report are you referring to?", "Can you be more specific?",
            "What do you mean by that?", "Sorry, which part are you asking about?",
        ]).format(j=j, x=thing)
        out = [s]
    if sub != "clarify" and rng.random() < 0.25:
        # Harder: the refusal comes with a general statement, which gives no information.
        out.append(rng.choice(["What I will say is that ", "All I'll say is that ",
                               "I'll just say that "]) + rng.choice(t["values"]) + ".")
    return out


def ambivalent(rng: random.Random, q: SubQ, others: list[SubQ]) -> list[str]:
    t = TOPICS[q.topic]
    other_topic = TOPICS[rng.choice(list(TOPICS))]
    if rng.random() < 0.05:
        # Borderline: starts as a refusal but then offers related information.
        return [rng.choice(["I'm not going to get into that today, but ",
                            "I won't comment on the details, but ", "I don't know about that, but "])
                + rng.choice(t["record"]) + "."]
    sub = rng.choices(["general", "dodge", "deflect", "partial", "hedge", "implicit"],
                      [17, 14, 13, 26, 14, 16])[0]
    if sub == "general":
        out = [uc_first(rng.choice(t["values"])) + "."]
        out.append(rng.choice([
            "We're going to keep working for {p}.", "This is about {p} and their future.",
            "I've always believed that, and I always will.", "That's the principle that guides us.",
            "And that's what we're focused on.", "That's what this is really about.",
        ]).format(p=t["people"]))
        if rng.random() < 0.4:
            out.append("I've always believed that " + rng.choice(t["values"]) + ".")
    elif sub == "dodge":
        lead = rng.choice(["What I can tell you is that ", "Let me tell you what we have done: ",
                           "Here's what people should know: ", "The fact is ",
                           "What matters is that "])
        out = [lead + rng.choice(t["record"]) + "."]
        if rng.random() < 0.5:
            out.append(uc_first(rng.choice(other_topic["record"])) + ".")
        if rng.random() < 0.3:
            out.append("The bigger issue right now is that " + rng.choice(other_topic["news"]) + ".")
    elif sub == "deflect":
        out = [rng.choice([
            "{B}.", "The real question is why {b}.", "You should be asking why {b}.",
            "Let's remember how we got here: {b}.", "I'd point out that {b}.",
        ]).format(B=uc_first(b := rng.choice(t["blame"])), b=b)]
        if rng.random() < 0.5:
            out.append(rng.choice([
                "We're cleaning up their mess.", "Nobody talks about that.",
                "They don't want to hear it, but it's true.", "That's the record.",
            ]))
    elif sub == "partial":
        if others and rng.random() < 0.75:
            o = rng.choice(others)
            out = direct_answer(rng, o)
            out[0] = rng.choice(["On the other point, ", "On your other question, ",
                                 "Well, on that other part, ", "Let me take the easier one. "]) + lc_first(out[0])
            if rng.random() < 0.5:
                out.append(rng.choice(["The rest we're still working through.",
                                       "Beyond that, we'll see.", "The other part is complicated."]))
        elif q.kind == "quantity" and rng.random() < 0.4:
            # Harder: a number, but not the one asked for.
            out = [rng.choice([
                "Last year it was about {n}, and this year we'll see.",
                "Well, the last estimate I saw was {n}, but that's going to change.",
                "It was {n} under the old plan. The new one is still being costed.",
            ]).format(n=fmt_number(rng.randint(20, 900), "int") + rng.choice([" billion", " thousand", " million", ""]))]
        elif q.kind in ("quantity", "event"):
            out = [rng.choice([
                "It'll be a big number, I'll tell you that.", "Less than the critics say.",
                "It will be {v}.", "{V}. That's all I can say.", "Somewhere in that range, give or take.",
                "More than last year, certainly.", "We're aiming for {v}.",
            ]).format(v=(v := rng.choice(VAGUE_DATES)), V=uc_first(v))]
        else:
            g = q.kw.get("gerund") or q.kw.get("policy") or "it"
            out = [rng.choice([
                "Part of it, yes.", "Some of that, yes, but not all of it.",
                "We'll do some of that.", "Yes, in some form.",
                "Elements of {g} make sense to me; others don't.",
                "I support parts of it.", "We're moving in that direction.",
            ]).format(g=g)]
            if rng.random() < 0.5:
                out.append("The details are still being worked out.")
    elif sub == "hedge":
        g = q.kw.get("gerund") or q.kw.get("policy") or "it"
        out = [rng.choice([
            "We're looking at all the options.", "Nothing is off the table.",
            "We'll see what happens.", "It depends on what Congress does.",
            "I think you'll be very happy with what we decide.", "That's under review.",
            "Possibly. We'll see.", "I'd like to, but it's up to Congress.",
            "Yes, well, we'll see what Congress does.",
            "I don't know if we'll get there this year, but we're trying.",
            "I'm not going to get into specifics, but we're looking very seriously at {g}.",
            "We're considering {g}, among other things.", "It's one of the things we're discussing.",
            "I wouldn't rule it out.", "Maybe. A lot depends on the economy.",
            "We will do what's right for {p}.", "Yes, in principle. The question is how and when.",
            "We're going to make a decision, and it will be the right one.",
        ]).format(g=g, p=t["people"])]
        if rng.random() < 0.4:
            out.append(rng.choice(["We'll have more to say in the coming days.",
                                   "We want to get it right.", "These things take time."]))
    else:  # implicit
        g = q.kw.get("gerund") or q.kw.get("policy") or t["name"]
        a = q.kw.get("action")
        if q.kind in ("yesno", "support"):
            opts = [
                "You know where I stand on that.", "My record on {t} speaks for itself.",
                "I campaigned on {g}, and I don't break promises.",
                "I think people know what I believe about {g}.",
                "Have I ever backed down on {t}?",
            ]
        else:
            opts = [
                "It's all in the plan we published last month.", "My record on {t} speaks for itself.",
                "The people who need to know already know.",
                "Read the budget. It's all in there.",
            ]
        if a:
            opts += [
                "I've said for years that we need to {a}.",
                "The money to {a} is already in the budget.",
                "We've already started the work to {a}.",
                "Let's just say the people planning to {a} have been very busy.",
                "Would I be standing here if I didn't want to {a}?",
            ]
        if q.kind == "support":
            opts += [
                "I voted for {g} twice before I took this job.",
                "I've never been a fan of {g}.",
                "My party wrote {g} into its platform, and I wrote the platform.",
            ]
        out = [rng.choice(opts).format(g=g, t=t["name"], a=a)]
    return out


def answer_text(rng: random.Random, label: str, q: SubQ, others: list[SubQ]) -> str:
    t = TOPICS[q.topic]
    if label == CR:
        body = clear_reply(rng, q, others)
    elif label == CNR:
        body = non_reply(rng, q)
    else:
        body = ambivalent(rng, q, others)
    while n_sentences(body) > 5 and len(body) > 1:
        body.pop()  # keep answers to 1-5 sentences; trailing sentences are supplementary
    target = rng.choices([1, 2, 3, 4, 5], [14, 26, 30, 20, 10])[0]
    sents = list(body)
    # Shared filler, placed before or after the body.
    while n_sentences(sents) < target:
        if rng.random() < 0.5:
            f = rng.choice(FILLERS_PRE).format(topic=t["name"])
            if f not in sents:
                sents.insert(0, f)
        else:
            f = rng.choice(FILLERS_POST).format(people=t["people"])
            if f not in sents:
                sents.append(f)
    if n_sentences(sents) < 5 and rng.random() < 0.12:
        sents.append(rng.choice(CLOSERS))
    if rng.random() < 0.45:
        inline = [o for o in OPENERS if o.endswith((",", "—"))]
        op = rng.choice(OPENERS if n_sentences(sents) < 5 else inline)
        if op in inline:
            sents[0] = op + " " + lc_first(sents[0])
        else:
            sents.insert(0, op)
    return " ".join(sents)


def make_pair(rng: random.Random, label: str) -> dict:
    topic = rng.choice(list(TOPICS))
    q = make_subq(rng, topic)
    full, others = interview_question(rng, q)
    ans = answer_text(rng, label, q, others)
    return {"question": q.text, "context": f"Q: {full}\nA: {ans}", "clarity_label": label}


def generate() -> dict[str, list[dict]]:
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for si, (split, counts) in enumerate(SPLITS.items()):
        rng = random.Random(SEED * 10 + si)
        records: list[dict] = []
        for label in LABELS:
            n = 0
            while n < counts[label]:
                rec = make_pair(rng, label)
                key = rec["context"]
                if key in seen:
                    continue
                seen.add(key)
                records.append(rec)
                n += 1
        rng.shuffle(records)
        out[split] = records
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def write_json(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_csv(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(["question", "context", "clarity_label"])
        for r in records:
            w.writerow([r["question"], r["context"], r["clarity_label"]])


def label_counts(records: list[dict]) -> Counter:
    return Counter(r["clarity_label"] for r in records)


def counts_line(records: list[dict]) -> str:
    c = label_counts(records)
    return ", ".join(f"{lab} {c[lab]}" for lab in LABELS)


README = """# Sample dataset

A small synthetic dataset of question/answer pairs from imaginary political interviews, labelled
for response clarity (the CLARITY / QEvasion task). It is the embedded default dataset, so that
`serve` works on a fresh machine, and the tests train on it.

Every question and answer here is **synthetic**: generated by `scripts/make_sample_data.py`
from templates and vocabulary written for this project. No text is taken from QEvasion or any
other corpus, and the speakers, names and facts are invented. Licence: the same as the project
(Apache-2.0).

## Files

| file | contents |
|---|---|
| `train.json` | training split, JSON list |
| `valid.json` | validation split, JSON list |
| `test.json` | held-out test split, JSON list |
| `valid.jsonl` | the same records as `valid.json`, as JSON Lines (one object per line) |
| `valid.csv` | the same records as `valid.json`, as CSV with header `question,context,clarity_label` (fields quoted, newlines inside fields kept) |

Each record:

```json
{{"question": "<the specific sub-question>",
 "context": "Q: <the full interview question>\\nA: <the answer>",
 "clarity_label": "Clear Reply" | "Clear Non-Reply" | "Ambivalent"}}
```

- **Clear Reply**: the answer explicitly gives the information asked for (yes/no, the number,
  the date, the position, the name).
- **Clear Non-Reply**: the answer does not give it: declines to answer, claims ignorance, or
  asks for clarification.
- **Ambivalent**: the answer gives something, but not clearly the answer: over-general talk,
  dodging, deflection, partial or hedged answers, implicit answers.

The interviewer's turn often contains several sub-questions; the label is about the one in
`question`. Cues are deliberately mixed (shared openers and filler in every class, "not going
to" in both refusals and clear "no" answers, partial answers that answer a different
sub-question), and a few borderline items are judgement calls (an implicit "yes" labelled Clear
Reply, a bare "that's under review" labelled Clear Non-Reply), so a bag-of-n-grams model does
well but not perfectly.

## Label counts

| split | Ambivalent | Clear Reply | Clear Non-Reply | total |
|---|---|---|---|---|
{rows}

Splits come from different random draws; no `context` appears twice in the whole dataset.

## Regenerating

```sh
python3 scripts/make_sample_data.py           # writes data/sample/*, prints label counts
python3 scripts/make_sample_data.py --check   # also reports a Naive Bayes sanity check
```

The script uses only the Python standard library and a fixed seed; its output is
byte-identical on every run. Do not edit these files by hand: change the script and regenerate.
"""


def write_readme(path: Path, data: dict[str, list[dict]]) -> None:
    rows = []
    for split, recs in data.items():
        c = label_counts(recs)
        rows.append(f"| {split} | {c[AMB]} | {c[CR]} | {c[CNR]} | {len(recs)} |")
    path.write_text(README.format(rows="\n".join(rows)), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Sanity check: multinomial Naive Bayes on word unigrams + bigrams of the answer
# --------------------------------------------------------------------------------------------

TOKEN = re.compile(r"[a-z0-9']+|[?.,;:!—-]")


def features(rec: dict) -> list[str]:
    ctx = rec["context"]
    ans = ctx.split("\nA: ", 1)[1] if "\nA: " in ctx else ctx
    toks = TOKEN.findall(ans.lower())
    return toks + [a + " " + b for a, b in zip(toks, toks[1:])]


def train_nb(records: list[dict]):
    prior = Counter()
    counts: dict[str, Counter] = {lab: Counter() for lab in LABELS}
    for r in records:
        prior[r["clarity_label"]] += 1
        counts[r["clarity_label"]].update(features(r))
    vocab = set().union(*counts.values())
    totals = {lab: sum(c.values()) for lab, c in counts.items()}
    n = len(records)

    def predict(rec: dict) -> str:
        best, best_s = None, -math.inf
        for lab in LABELS:
            s = math.log(prior[lab] / n)
            for f in features(rec):
                if f in vocab:
                    s += math.log((counts[lab][f] + 0.5) / (totals[lab] + 0.5 * len(vocab)))
            if s > best_s:
                best, best_s = lab, s
        return best

    return predict


def scores(gold: list[str], pred: list[str]) -> tuple[float, float]:
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for lab in LABELS:
        tp = sum(g == p == lab for g, p in zip(gold, pred))
        fp = sum(p == lab != g for g, p in zip(gold, pred))
        fn = sum(g == lab != p for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return acc, sum(f1s) / len(f1s)


def check(data: dict[str, list[dict]]) -> None:
    predict = train_nb(data["train"])
    majority = label_counts(data["train"]).most_common(1)[0][0]
    for split in ("train", "valid", "test"):
        gold = [r["clarity_label"] for r in data[split]]
        acc, f1 = scores(gold, [predict(r) for r in data[split]])
        bacc, bf1 = scores(gold, [majority] * len(gold))
        print(f"  NB {split:5}: accuracy {acc:.3f}, macro-F1 {f1:.3f}   "
              f"(majority '{majority}': accuracy {bacc:.3f}, macro-F1 {bf1:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent.parent / "data" / "sample")
    ap.add_argument("--check", action="store_true",
                    help="train a Naive Bayes baseline on train and report valid/test scores")
    args = ap.parse_args()

    data = generate()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, recs in data.items():
        write_json(args.out / f"{split}.json", recs)
    write_jsonl(args.out / "valid.jsonl", data["valid"])
    write_csv(args.out / "valid.csv", data["valid"])
    write_readme(args.out / "README.md", data)

    for split, recs in data.items():
        print(f"{split:5}: {len(recs):3} pairs ({counts_line(recs)})")
    if args.check:
        check(data)


if __name__ == "__main__":
    main()
