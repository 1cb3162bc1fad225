// A patient's demographics: the card every role that may read them sees, and the form the
// front desk registers and edits them with (phone, email, address, emergency contact and
// insurance). The form's content is a draft kept in memory (drafts.ts), never in storage.
import type { ReactNode } from "react";

import { age } from "./age";
import type { Demographics, Patient, Sex } from "./api/types";
import { fullName } from "./patients";
import { bindTo, Field, Select, WordOptions, type Action } from "./ui";

export function DemographicsCard(props: {
  patient: Patient;
  onClose?: () => void;
  onEdit?: () => void;
  titled?: boolean;
  children?: ReactNode;
}): ReactNode {
  const { patient, onClose } = props;
  const d = patient.demographics;
  return (
    <div className="card" role="region" aria-label="Demographics">
      {props.titled !== false && (
        <h3>
          {fullName(d)} <small>({patient.mrn})</small>
        </h3>
      )}
      <dl>
        <dt>Born</dt>
        <dd>
          {d.date_of_birth} ({age(d.date_of_birth)})
        </dd>
        <dt>Sex</dt>
        <dd>{d.sex}</dd>
        {d.phone && (
          <>
            <dt>Phone</dt>
            <dd>{d.phone}</dd>
          </>
        )}
        {d.email && (
          <>
            <dt>Email</dt>
            <dd>{d.email}</dd>
          </>
        )}
        {d.address && (
          <>
            <dt>Address</dt>
            <dd>
              {d.address.line1}
              {d.address.line2 ? `, ${d.address.line2}` : ""}, {d.address.postal_code} {d.address.city},{" "}
              {d.address.country}
            </dd>
          </>
        )}
        {d.emergency_contact && (
          <>
            <dt>Emergency contact</dt>
            <dd>
              {d.emergency_contact.name} ({d.emergency_contact.relationship}), {d.emergency_contact.phone}
            </dd>
          </>
        )}
        {d.insurance && (
          <>
            <dt>Insurance</dt>
            <dd>
              {d.insurance.company}, member {d.insurance.member_id} (valid until {d.insurance.valid_until})
            </dd>
          </>
        )}
      </dl>
      {props.children}
      <div className="buttons">
        {props.onEdit && (
          <button className="secondary" onClick={props.onEdit}>
            Edit demographics
          </button>
        )}
        {onClose && (
          <button className="secondary" onClick={onClose}>
            Close
          </button>
        )}
      </div>
    </div>
  );
}

const SEXES: Sex[] = ["female", "male", "other", "unknown"];

/** The form's fields, as typed (strings). */
export interface DemographicsDraft {
  given_name: string;
  family_name: string;
  date_of_birth: string;
  sex: Sex;
  phone: string;
  email: string;
  line1: string;
  line2: string;
  postal_code: string;
  city: string;
  region: string;
  country: string;
  contact_name: string;
  contact_relationship: string;
  contact_phone: string;
  insurance_company: string;
  insurance_member_id: string;
  insurance_valid_until: string;
}

export function emptyDemographics(): DemographicsDraft {
  return {
    given_name: "",
    family_name: "",
    date_of_birth: "",
    sex: "unknown",
    phone: "",
    email: "",
    line1: "",
    line2: "",
    postal_code: "",
    city: "",
    region: "",
    country: "DE",
    contact_name: "",
    contact_relationship: "",
    contact_phone: "",
    insurance_company: "",
    insurance_member_id: "",
    insurance_valid_until: "",
  };
}

export function draftOfDemographics(d: Demographics): DemographicsDraft {
  return {
    given_name: d.given_name,
    family_name: d.family_name,
    date_of_birth: d.date_of_birth,
    sex: d.sex,
    phone: d.phone ?? "",
    email: d.email ?? "",
    line1: d.address?.line1 ?? "",
    line2: d.address?.line2 ?? "",
    postal_code: d.address?.postal_code ?? "",
    city: d.address?.city ?? "",
    region: d.address?.region ?? "",
    country: d.address?.country ?? "DE",
    contact_name: d.emergency_contact?.name ?? "",
    contact_relationship: d.emergency_contact?.relationship ?? "",
    contact_phone: d.emergency_contact?.phone ?? "",
    insurance_company: d.insurance?.company ?? "",
    insurance_member_id: d.insurance?.member_id ?? "",
    insurance_valid_until: d.insurance?.valid_until ?? "",
  };
}

/** What the draft says, as the API takes it. A group (address, emergency contact,
 * insurance) is sent when any of its fields is filled; its empty fields are left out, so
 * the server names each missing one under its field. */
export function demographicsOf(d: DemographicsDraft): Demographics {
  const t = (value: string): string => value.trim();
  const filled = <T extends Record<string, string>>(group: T): Partial<T> =>
    Object.fromEntries(Object.entries(group).filter(([, value]) => value !== "")) as Partial<T>;
  const out: Demographics = {
    given_name: t(d.given_name),
    family_name: t(d.family_name),
    date_of_birth: d.date_of_birth,
    sex: d.sex,
    phone: t(d.phone) || null,
    email: t(d.email) || null,
    address: null,
    emergency_contact: null,
    insurance: null,
  };
  const address = filled({
    line1: t(d.line1),
    line2: t(d.line2),
    postal_code: t(d.postal_code),
    city: t(d.city),
    region: t(d.region),
  });
  if (Object.keys(address).length)
    out.address = { ...address, country: t(d.country).toUpperCase() } as Demographics["address"];
  const contact = filled({
    name: t(d.contact_name),
    relationship: t(d.contact_relationship),
    phone: t(d.contact_phone),
  });
  if (Object.keys(contact).length) out.emergency_contact = contact as Demographics["emergency_contact"];
  const insurance = filled({
    company: t(d.insurance_company),
    member_id: t(d.insurance_member_id),
    valid_until: d.insurance_valid_until,
  });
  if (Object.keys(insurance).length) out.insurance = insurance as Demographics["insurance"];
  return out;
}

/** The fields, bound to a draft; each shows the server's problem with it under it. */
export function DemographicsFields(props: {
  draft: DemographicsDraft;
  onChange: (draft: DemographicsDraft) => void;
  action: Action;
}): ReactNode {
  const bind = bindTo(props.draft, props.onChange, props.action);
  return (
    <>
      <Field label="Given name" required autoComplete="off" {...bind("given_name")} />
      <Field label="Family name" required autoComplete="off" {...bind("family_name")} />
      <Field label="Date of birth" type="date" required {...bind("date_of_birth")} />
      <Select label="Sex" {...bind("sex")}>
        <WordOptions values={SEXES} />
      </Select>
      <Field
        label="Phone"
        type="tel"
        autoComplete="off"
        hint="Any notation: 030 1234567 or +49 30 1234567"
        {...bind("phone")}
      />
      <Field label="Email" type="email" autoComplete="off" {...bind("email")} />
      <fieldset className="group">
        <legend>Address</legend>
        <Field label="Street and number" shows="address.line1" autoComplete="off" {...bind("line1")} />
        <Field label="Postal code" shows="address.postal_code" autoComplete="off" {...bind("postal_code")} />
        <Field label="City" shows="address.city" autoComplete="off" {...bind("city")} />
        <Field label="Country (2 letters)" shows="address.country" maxLength={2} {...bind("country")} />
      </fieldset>
      <fieldset className="group">
        <legend>Emergency contact</legend>
        <Field label="Contact's name" shows="emergency_contact.name" autoComplete="off" {...bind("contact_name")} />
        <Field
          label="Relationship"
          shows="emergency_contact.relationship"
          autoComplete="off"
          placeholder="e.g. daughter"
          {...bind("contact_relationship")}
        />
        <Field
          label="Contact's number"
          shows="emergency_contact.phone"
          type="tel"
          autoComplete="off"
          {...bind("contact_phone")}
        />
      </fieldset>
      <fieldset className="group">
        <legend>Insurance</legend>
        <Field label="Insurance company" shows="insurance.company" autoComplete="off" {...bind("insurance_company")} />
        <Field label="Member number" shows="insurance.member_id" autoComplete="off" {...bind("insurance_member_id")} />
        <Field label="Valid until" shows="insurance.valid_until" type="date" {...bind("insurance_valid_until")} />
      </fieldset>
    </>
  );
}
