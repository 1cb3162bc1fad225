import { describe, expect, it } from "vitest";

import { ApiError } from "./api/client";
import { describe as describeError, problemFor, problemsOf, unshown } from "./problems";

const refused = (details: unknown[]): ApiError => new ApiError(422, "validation", "the request is not valid", details);

describe("validation problems in words", () => {
  it("say pydantic's problems as sentences, once per field, without locations or prefixes", () => {
    const problems = problemsOf(
      refused([
        {
          loc: ["body", "demographics", "given_name"],
          msg: "String should have at least 1 character",
          type: "string_too_short",
        },
        {
          loc: ["body", "demographics", "phone"],
          msg: "Value error, a phone number has digits, an optional leading +, and ( ) . - / spaces",
          type: "value_error",
        },
        {
          loc: ["body", "demographics", "address", "country"],
          msg: "String should match pattern '^[A-Z]{2}$'",
          type: "string_pattern_mismatch",
        },
        { loc: ["body", "demographics", "emergency_contact", "relationship"], msg: "Field required", type: "missing" },
        { loc: ["body", "expires_hours"], msg: "Input should be less than or equal to 720", type: "less_than_equal" },
        {
          loc: ["body", "demographics", "date_of_birth"],
          msg: "Value error, date of birth is in the future",
          type: "value_error",
        },
      ]),
    );
    expect(problems).toEqual([
      { key: "demographics.given_name", sentence: "Enter the given name." },
      {
        key: "demographics.phone",
        sentence: "A phone number has digits, an optional leading +, and ( ) . - / spaces.",
      },
      {
        key: "demographics.address.country",
        sentence: "Write the country as its two-letter code in capitals, e.g. DE.",
      },
      { key: "demographics.emergency_contact.relationship", sentence: "Enter the relationship." },
      { key: "expires_hours", sentence: "The validity can be at most 720." },
      { key: "demographics.date_of_birth", sentence: "Date of birth is in the future." },
    ]);
    for (const p of problems) expect(p.sentence).not.toMatch(/Value error|demographics\.|\^\[|String should/);
  });

  it("keep the services' own sentences and say the same problem once", () => {
    const said = "The working hours 18:00–08:00 on Monday to Friday end before they start.";
    const problems = problemsOf(
      refused([
        { loc: ["body", "weekly"], msg: said, type: "end_before_start" },
        { loc: ["body", "weekly"], msg: said, type: "end_before_start" },
        { loc: ["start"], msg: "The start is in the past.", type: "past" },
      ]),
    );
    expect(problems).toEqual([
      { key: "weekly", sentence: said },
      { key: "start", sentence: "The start is in the past." },
    ]);
  });

  it("go under the field that shows them: exact path, else the least nested one ending with its name", () => {
    const problems = problemsOf(
      refused([
        { loc: ["body", "demographics", "emergency_contact", "phone"], msg: "Field required", type: "missing" },
        {
          loc: ["body", "demographics", "phone"],
          msg: "Value error, a phone number has 4 to 15 digits",
          type: "value_error",
        },
      ]),
    );
    expect(problemFor(problems, "phone")?.key).toBe("demographics.phone");
    expect(problemFor(problems, "emergency_contact.phone")?.sentence).toBe("Enter the phone number.");
    // only the contact's number wrong: the patient's phone field does not say it too
    const contact = problems.filter((p) => p.key.includes("emergency_contact"));
    expect(problemFor(contact, "phone", ["phone", "emergency_contact.phone"])).toBeUndefined();
    expect(problemFor(contact, "emergency_contact.phone", ["phone", "emergency_contact.phone"])?.key).toBe(
      "demographics.emergency_contact.phone",
    );
    expect(unshown(problems, ["phone"]).map((p) => p.key)).toEqual(["demographics.emergency_contact.phone"]);
    expect(unshown(problems, ["phone", "emergency_contact.phone"])).toEqual([]);
  });

  it("leave conflicts in the server's words (named in the clinic's time there)", () => {
    const conflict = new ApiError(409, "conflict", "Dr Berg already has 10:00–10:30 on Thu 3 Dec.", { conflict: {} });
    expect(describeError(conflict)).toBe("Dr Berg already has 10:00–10:30 on Thu 3 Dec.");
    expect(problemsOf(conflict)).toEqual([]);
    expect(describeError(refused([{ loc: ["body", "x"], msg: "Field required", type: "missing" }]))).toBe(
      "Some entries need correcting.",
    );
  });
});
